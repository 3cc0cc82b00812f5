/*
 * explorer-inside: the inside probe (explorer, issue 31).
 *
 * Run where a side's workload runs, it prints ONE JSON document on stdout:
 *   "facts"       what this process sees of the machine it runs on, each value with the method that read it;
 *   "operations"  what the kernel answered to escape-relevant system calls, each made so that it cannot
 *                 change anything (its "harmless" says how): the raw return value and errno only. explorer
 *                 classifies them (explorer/probes/inside/classify.py); operations.yaml says why each matters.
 * It writes no file, needs no /tmp and no file of its own, and runs from a read-only root. Every operation
 * is made in a forked child that exits at once: a filter's KILL action, a crash or a namespace the call
 * made ends with that child, and the child's fate is reported.
 *
 * Usage: explorer-inside [--uid N --gid N | --as-pid PID] [--timeout S] [--sleep-for-test S]
 *   --uid N --gid N     drop to that user before probing (setgroups([]), setresgid, setresuid, verified), so
 *                       that a channel that runs as root (a guest agent, nsenter) can probe as the workload's
 *                       user. A drop that fails is reported ("user": "assumed": false) and nothing is probed.
 *   --as-pid PID        drop to the effective uid and gid of process PID (the workload, as this namespace
 *                       numbers it), read from /proc/PID/status; one that cannot be read is a failed drop.
 *   --timeout S         give up after S seconds: a message on stderr, nothing on stdout, exit 124 (0: never).
 *   --sleep-for-test S  sleep S seconds before probing; it exists only so that tests can see a hang handled.
 * An option given twice takes its last value.
 * Exit status: 0 probed; 1 the probe itself failed; 2 usage; 3 the drop to --uid/--gid failed (the
 * document says why); 124 --timeout reached.
 *
 * Built by explorer with `gcc -O1 -static` (explorer/probes/inside/build.py).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <ifaddrs.h>
#include <limits.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/klog.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/quota.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/swap.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <linux/bpf.h>
#include <linux/capability.h>

#define PROBE_FORMAT "explorer-inside/1"
/* No path under this prefix is expected to exist; the probe checks that it does not before any operation
 * that relies on it (and skips those operations where it does). */
#define NX "/nonexistent-explorer"
#define MAX_LISTED 64

/* ------------------------------------------------------------------ the JSON document, built in memory */

static char *out_p;
static size_t out_len, out_cap;
static int first[64] = {1}, level, keyed;

static void die(const char *what)
{
	dprintf(2, "explorer-inside: %s\n", what);
	_exit(1);
}

static void emit(const char *s, size_t n)
{
	if (out_len + n + 1 > out_cap) {
		size_t cap = out_cap ? out_cap : 65536;
		while (cap < out_len + n + 1)
			cap *= 2;
		char *p = realloc(out_p, cap);
		if (!p)
			die("out of memory");
		out_p = p;
		out_cap = cap;
	}
	memcpy(out_p + out_len, s, n);
	out_len += n;
}

static void emits(const char *s) { emit(s, strlen(s)); }

static void sep(void)
{
	if (keyed) {
		keyed = 0;
		return;
	}
	if (!first[level])
		emit(",", 1);
	first[level] = 0;
}

/* The length of a valid UTF-8 sequence at s (at most n bytes), or 0. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	size_t len = s[0] >= 0xf0 && s[0] <= 0xf4 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc2 && s[0] < 0xe0 ? 2 : 0;
	if (!len || len > n)
		return 0;
	for (size_t i = 1; i < len; i++)
		if ((s[i] & 0xc0) != 0x80)
			return 0;
	return len;
}

/* A JSON string; bytes that are not UTF-8 become U+FFFD (mount paths may hold any byte). */
static void quoted(const char *str, size_t n)
{
	const unsigned char *s = (const unsigned char *)str;
	char esc[8];
	emit("\"", 1);
	for (size_t i = 0; i < n;) {
		unsigned char c = s[i];
		if (c == '"' || c == '\\') {
			esc[0] = '\\';
			esc[1] = (char)c;
			emit(esc, 2);
			i++;
		} else if (c < 0x20 || c == 0x7f) {
			snprintf(esc, sizeof esc, "\\u%04x", c);
			emits(esc);
			i++;
		} else if (c < 0x80) {
			emit((const char *)s + i, 1);
			i++;
		} else {
			size_t len = utf8_len(s + i, n - i);
			if (len) {
				emit((const char *)s + i, len);
				i += len;
			} else {
				emits("\\ufffd");
				i++;
			}
		}
	}
	emit("\"", 1);
}

static void open_(char c)
{
	sep();
	emit(&c, 1);
	first[++level] = 1;
}

static void close_(char c)
{
	emit(&c, 1);
	level--;
}

static void key(const char *k)
{
	sep();
	quoted(k, strlen(k));
	emit(":", 1);
	keyed = 1;
}

static void jstr(const char *s)
{
	sep();
	if (s)
		quoted(s, strlen(s));
	else
		emits("null");
}

static void jint(long long v)
{
	char b[32];
	sep();
	snprintf(b, sizeof b, "%lld", v);
	emits(b);
}

static void jbool(int v)
{
	sep();
	emits(v ? "true" : "false");
}

static void jnull(void)
{
	sep();
	emits("null");
}

static void kstr(const char *k, const char *v) { key(k); jstr(v); }
static void kint(const char *k, long long v) { key(k); jint(v); }
static void kbool(const char *k, int v) { key(k); jbool(v); }

/* ------------------------------------------------------------------ small helpers */

static const char *errno_name(int e)
{
	const char *name = strerrorname_np(e);
	static char unknown[16];
	if (name)
		return name;
	snprintf(unknown, sizeof unknown, "E%d", e);
	return unknown;
}

/* "ENOENT (2): No such file or directory" */
static const char *errno_text(int e)
{
	static char b[160];
	snprintf(b, sizeof b, "%s (%d): %s", errno_name(e), e, strerror(e));
	return b;
}

/* Up to n-1 bytes of a file, NUL-terminated; the length, or -errno. */
static ssize_t read_file(const char *path, char *buf, size_t n)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	size_t got = 0;
	while (got < n - 1) {
		ssize_t r = read(fd, buf + got, n - 1 - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			int e = errno;
			close(fd);
			return -e;
		}
		if (r == 0)
			break;
		got += (size_t)r;
	}
	close(fd);
	buf[got] = '\0';
	return (ssize_t)got;
}

static void chomp(char *s)
{
	size_t n = strlen(s);
	while (n && (s[n - 1] == '\n' || s[n - 1] == ' ' || s[n - 1] == '\t'))
		s[--n] = '\0';
}

static int all_digits(const char *s)
{
	if (!*s)
		return 0;
	for (; *s; s++)
		if (*s < '0' || *s > '9')
			return 0;
	return 1;
}

/* Whether `word` is one of the comma-separated items of `list`. */
static int in_list(const char *list, const char *word)
{
	size_t n = strlen(word);
	for (const char *p = list; p && *p;) {
		const char *end = strchr(p, ',');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		if (len == n && !strncmp(p, word, n))
			return 1;
		p = end ? end + 1 : NULL;
	}
	return 0;
}

/* mountinfo's octal escapes (\040 for a space) undone in place. */
static void unescape(char *s)
{
	char *w = s;
	for (char *r = s; *r;) {
		if (r[0] == '\\' && r[1] >= '0' && r[1] <= '3' && r[2] >= '0' && r[2] <= '7' && r[3] >= '0' && r[3] <= '7') {
			*w++ = (char)((r[1] - '0') * 64 + (r[2] - '0') * 8 + (r[3] - '0'));
			r += 4;
		} else {
			*w++ = *r++;
		}
	}
	*w = '\0';
}

/* ------------------------------------------------------------------ the mount table (/proc/self/mountinfo) */

struct mount {
	char *root, *point, *options, *fstype, *source, *super;
};
static struct mount *mounts;
static size_t mount_count;
static int mounts_errno;

static void read_mounts(void)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char *line = NULL;
	size_t cap = 0;
	if (!f) {
		mounts_errno = errno;
		return;
	}
	while (getline(&line, &cap, f) > 0) {
		char *field[6], *save = NULL, *tok = strtok_r(line, " \n", &save);
		int i = 0;
		for (; tok && i < 6; i++, tok = strtok_r(NULL, " \n", &save))
			field[i] = tok;
		while (tok && strcmp(tok, "-")) /* optional fields, up to the separator */
			tok = strtok_r(NULL, " \n", &save);
		char *fstype = strtok_r(NULL, " \n", &save), *source = strtok_r(NULL, " \n", &save);
		char *super = strtok_r(NULL, " \n", &save);
		if (i < 6 || !fstype || !source)
			continue;
		struct mount *grown = realloc(mounts, (mount_count + 1) * sizeof *mounts);
		if (!grown)
			die("out of memory");
		mounts = grown;
		struct mount *m = &mounts[mount_count++];
		m->root = strdup(field[3]);
		m->point = strdup(field[4]);
		m->options = strdup(field[5]);
		m->fstype = strdup(fstype);
		m->source = strdup(source);
		m->super = strdup(super ? super : "");
		if (!m->root || !m->point || !m->options || !m->fstype || !m->source || !m->super)
			die("out of memory");
		unescape(m->root);
		unescape(m->point);
		unescape(m->source);
	}
	free(line);
	fclose(f);
}

/* ------------------------------------------------------------------ facts */

static void fact_begin(const char *name, const char *method)
{
	key(name);
	open_('{');
	kstr("method", method);
}

static void fact_error(const char *name, const char *method, const char *error)
{
	fact_begin(name, method);
	key("value");
	jnull();
	kstr("error", error);
	close_('}');
}

static void fact_string(const char *name, const char *method, const char *value)
{
	fact_begin(name, method);
	kstr("value", value);
	close_('}');
}

static void fact_int(const char *name, const char *method, long long value)
{
	fact_begin(name, method);
	kint("value", value);
	close_('}');
}

/* A fact that is one line of a file: its content, or null with the errno. */
static void fact_file_line(const char *name, const char *path, const char *method)
{
	char buf[512];
	ssize_t n = read_file(path, buf, sizeof buf);
	if (n < 0)
		return fact_error(name, method, errno_text((int)-n));
	chomp(buf);
	fact_string(name, method, buf);
}

static void facts_uname(void)
{
	struct utsname u;
	if (uname(&u)) {
		const char *e = errno_text(errno);
		fact_error("kernel_release", "uname(2): release", e);
		fact_error("kernel_version", "uname(2): version", e);
		fact_error("machine", "uname(2): machine", e);
		fact_error("hostname", "uname(2): nodename", e);
		return;
	}
	fact_string("kernel_release", "uname(2): release", u.release);
	fact_string("kernel_version", "uname(2): version", u.version);
	fact_string("machine", "uname(2): machine", u.machine);
	fact_string("hostname", "uname(2): nodename", u.nodename);
}

static void fact_mem_total(void)
{
	const char *method = "/proc/meminfo: MemTotal (kB) x 1024";
	char buf[8192];
	ssize_t n = read_file("/proc/meminfo", buf, sizeof buf);
	if (n < 0)
		return fact_error("mem_total_bytes", method, errno_text((int)-n));
	char *line = strstr(buf, "MemTotal:");
	unsigned long long kb;
	if (!line || sscanf(line, "MemTotal: %llu kB", &kb) != 1)
		return fact_error("mem_total_bytes", method, "no MemTotal line");
	fact_int("mem_total_bytes", method, (long long)(kb * 1024));
}

static void facts_cpus(void)
{
	for (size_t count = 1024;; count *= 2) {
		cpu_set_t *set = CPU_ALLOC(count);
		size_t size = CPU_ALLOC_SIZE(count);
		if (!set)
			die("out of memory");
		if (!sched_getaffinity(0, size, set)) {
			fact_int("cpus_affinity", "sched_getaffinity(2): CPUs this process may run on", CPU_COUNT_S(size, set));
			CPU_FREE(set);
			break;
		}
		int e = errno;
		CPU_FREE(set);
		if (e != EINVAL || count >= (1u << 20)) {
			fact_error("cpus_affinity", "sched_getaffinity(2): CPUs this process may run on", errno_text(e));
			break;
		}
	}
	long online = sysconf(_SC_NPROCESSORS_ONLN);
	const char *method = "sysconf(_SC_NPROCESSORS_ONLN) (glibc reads /sys/devices/system/cpu/online)";
	if (online < 0)
		fact_error("cpus_online", method, errno_text(errno));
	else
		fact_int("cpus_online", method, online);
	fact_file_line("cpus_online_list", "/sys/devices/system/cpu/online", "/sys/devices/system/cpu/online");
}

/* The directory of this process's own cgroup in the hierarchy that has `controller` (NULL: the v2 unified
 * hierarchy), and the top of that hierarchy as mounted here; 0, or -1 with why. */
static int cgroup_dir(const char *controller, char *dir, size_t n, char *top, size_t ntop, const char **why)
{
	static char buf[8192];
	ssize_t got = read_file("/proc/self/cgroup", buf, sizeof buf);
	const char *path = NULL;
	if (got < 0) {
		*why = errno_text((int)-got);
		return -1;
	}
	for (char *save = NULL, *line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
		if (!c2)
			continue;
		*c1 = *c2 = '\0';
		if (controller ? in_list(c1 + 1, controller) : (!strcmp(line, "0") && c1[1] == '\0'))
			path = c2 + 1;
		if (path)
			break;
	}
	if (!path) {
		*why = controller ? "no cgroup v1 hierarchy with this controller in /proc/self/cgroup"
				  : "no cgroup v2 line (0::) in /proc/self/cgroup";
		return -1;
	}
	const struct mount *best = NULL;
	for (size_t i = 0; i < mount_count; i++) {
		const struct mount *m = &mounts[i];
		size_t rl = strlen(m->root);
		if (controller ? strcmp(m->fstype, "cgroup") || !in_list(m->super, controller) : strcmp(m->fstype, "cgroup2"))
			continue;
		if (strcmp(m->root, "/") && (strncmp(path, m->root, rl) || (path[rl] && path[rl] != '/')))
			continue;
		if (!best || strlen(m->root) >= strlen(best->root))
			best = m;
	}
	if (!best) {
		*why = "its hierarchy is not mounted here (or not at a root above this cgroup)";
		return -1;
	}
	const char *rel = strcmp(best->root, "/") ? path + strlen(best->root) : path;
	snprintf(dir, n, "%s%s", best->point, strcmp(rel, "/") ? rel : "");
	snprintf(top, ntop, "%s", best->point);
	return 0;
}

/* A limit as a number (bytes, or a CPU fraction x 1e6); -1 when unlimited, -2 when unreadable. */
static double limit_of(const char *text, int cpu)
{
	char a[64] = "", b[64] = "";
	if (sscanf(text, "%63s %63s", a, b) < 1)
		return -2;
	if (!strcmp(a, "max") || !strcmp(a, "-1"))
		return -1;
	char *end;
	double v = strtod(a, &end);
	if (*end)
		return -2;
	if (cpu) {
		double period = strtod(b, &end);
		if (*end || period <= 0)
			return -2;
		return v / period * 1e6;
	}
	return v >= 4611686018427387904.0 ? -1 : v; /* v1 says "no limit" with a huge page-rounded number */
}

/* The tightest limit from the process's own cgroup up to the top of its hierarchy. For cgroup v1's CPU
 * limit the two files (quota, period) are read as one value "QUOTA PERIOD". */
static void fact_cgroup_limit(const char *name, const char *controller, const char *v2_file, const char *v1_file,
			      const char *v1_period)
{
	char dir[PATH_MAX], top[PATH_MAX], method[256], best_text[128] = "", best_file[PATH_MAX + 64] = "";
	const char *why = NULL;
	int v1 = !cgroup_dir(controller, dir, sizeof dir, top, sizeof top, &why);
	if (!v1 && cgroup_dir(NULL, dir, sizeof dir, top, sizeof top, &why))
		return fact_error(name, "cgroup v1 or v2 of this process (/proc/self/cgroup, /proc/self/mountinfo)", why);
	snprintf(method, sizeof method, "cgroup %s: the tightest %s%s%s from this process's own cgroup up to its hierarchy's top",
		 v1 ? "v1" : "v2", v1 ? v1_file : v2_file, v1 && v1_period ? " / " : "", v1 && v1_period ? v1_period : "");
	double best = -2;
	int levels = 0;
	for (;;) {
		char file[PATH_MAX + 64], text[128], period[64];
		snprintf(file, sizeof file, "%s/%s", dir, v1 ? v1_file : v2_file);
		ssize_t got = read_file(file, text, sizeof text);
		if (got >= 0 && v1 && v1_period) {
			char pfile[PATH_MAX + 64];
			snprintf(pfile, sizeof pfile, "%s/%s", dir, v1_period);
			chomp(text);
			got = read_file(pfile, period, sizeof period);
			if (got >= 0) {
				chomp(period);
				size_t used = strlen(text);
				snprintf(text + used, sizeof text - used, " %s", period);
			}
		}
		if (got >= 0) {
			chomp(text);
			double v = limit_of(text, v1_period || !strcmp(v2_file, "cpu.max"));
			levels++;
			if (best_text[0] == '\0' || (v >= 0 && (best < 0 || v < best))) {
				best = v;
				snprintf(best_text, sizeof best_text, "%s", text);
				snprintf(best_file, sizeof best_file, "%s", file);
			}
		}
		if (!strcmp(dir, top) || !strchr(dir, '/'))
			break;
		*strrchr(dir, '/') = '\0';
		if (strlen(dir) < strlen(top))
			break;
	}
	if (!levels) /* cgroup v2's root has no memory.max or cpu.max: no limit is set there */
		return fact_error(name, method, "no level from this cgroup up to the top has the file (the root cgroup has none)");
	fact_begin(name, method);
	kstr("value", best_text);
	kstr("source", best_file);
	close_('}');
}

static void fact_uptime(void)
{
	char buf[128];
	double up;
	ssize_t n = read_file("/proc/uptime", buf, sizeof buf);
	if (n < 0)
		return fact_error("uptime_s", "/proc/uptime: first field", errno_text((int)-n));
	if (sscanf(buf, "%lf", &up) != 1)
		return fact_error("uptime_s", "/proc/uptime: first field", "unreadable");
	fact_begin("uptime_s", "/proc/uptime: first field");
	key("value");
	sep();
	snprintf(buf, sizeof buf, "%.2f", up);
	emits(buf);
	close_('}');
}

static void fact_interfaces(void)
{
	const char *method = "getifaddrs(3) (netlink): every interface once, IFF_LOOPBACK from its flags";
	struct ifaddrs *list, *a;
	if (getifaddrs(&list))
		return fact_error("net_interfaces", method, errno_text(errno));
	fact_begin("net_interfaces", method);
	key("value");
	open_('[');
	for (a = list; a; a = a->ifa_next) {
		struct ifaddrs *b = list;
		while (b != a && strcmp(b->ifa_name, a->ifa_name))
			b = b->ifa_next;
		if (b != a)
			continue; /* listed already */
		open_('{');
		kstr("name", a->ifa_name);
		kbool("loopback", !!(a->ifa_flags & IFF_LOOPBACK));
		close_('}');
	}
	close_(']');
	close_('}');
	freeifaddrs(list);
}

static void facts_processes(void)
{
	const char *method = "/proc: directories named by a number";
	DIR *d = opendir("/proc");
	if (!d) {
		fact_error("processes_visible", method, errno_text(errno));
	} else {
		long long count = 0;
		for (struct dirent *e; (e = readdir(d));)
			count += all_digits(e->d_name);
		closedir(d);
		fact_int("processes_visible", method, count);
	}
	fact_file_line("pid1_comm", "/proc/1/comm", "/proc/1/comm");
}

/* The options of a filesystem that name absolute paths (overlay's lowerdir=, upperdir=, workdir=). */
static void path_options(const char *super, char *out, size_t n)
{
	out[0] = '\0';
	for (const char *p = super; *p;) {
		const char *end = strchr(p, ',');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		const char *eq = memchr(p, '=', len);
		if (eq && eq + 1 < p + len && eq[1] == '/') {
			size_t used = strlen(out);
			snprintf(out + used, n - used, "%s%.*s", used ? "," : "", (int)len, p);
		}
		if (!end)
			break;
		p = end + 1;
	}
}

/* "Shows a host path": a mount whose root field (the directory or file of its filesystem mounted here) is
 * an absolute path other than "/" (a bind mount of part of a filesystem: Docker's /etc/hosts is
 * /var/lib/docker/containers/ID/hosts of the host's disk), whose source is an absolute path outside /dev,
 * or whose filesystem options name absolute paths (overlay's lowerdir=/var/lib/docker/overlay2/...). */
static void fact_mounts(void)
{
	const char *method = "/proc/self/mountinfo: entries; those whose root field is a path other than /, whose "
			     "source is a path outside /dev, or whose options name paths";
	if (mounts_errno)
		return fact_error("mounts", method, errno_text(mounts_errno));
	fact_begin("mounts", method);
	key("value");
	open_('{');
	kint("count", (long long)mount_count);
	key("host_paths");
	open_('[');
	long long shown = 0, listed = 0;
	for (size_t i = 0; i < mount_count; i++) {
		const struct mount *m = &mounts[i];
		char options[2048];
		int by_root = m->root[0] == '/' && strcmp(m->root, "/");
		int by_source = m->source[0] == '/' && strncmp(m->source, "/dev/", 5);
		path_options(m->super, options, sizeof options);
		if (!by_root && !by_source && !options[0])
			continue;
		if (shown++ >= MAX_LISTED)
			continue;
		listed++;
		open_('{');
		kstr("mount_point", m->point);
		kstr("root", m->root);
		kstr("fstype", m->fstype);
		kstr("source", m->source);
		key("shows");
		open_('[');
		if (by_root)
			jstr("root");
		if (by_source)
			jstr("source");
		if (options[0])
			jstr("options");
		close_(']');
		kstr("path_options", options);
		close_('}');
	}
	close_(']');
	kint("host_path_count", shown);
	kbool("truncated", shown > listed);
	close_('}');
	close_('}');
}

/* Writable = access(W_OK) succeeds AND the mount is not read-only (statvfs's ST_RDONLY); nothing is written. */
static void fact_writable(const char *name, const char *path)
{
	char method[160];
	struct statvfs st;
	snprintf(method, sizeof method, "access(%s, W_OK) and statvfs(%s) ST_RDONLY; nothing written", path, path);
	int ok = !access(path, W_OK), access_errno = ok ? 0 : errno;
	if (statvfs(path, &st))
		return fact_error(name, method, errno_text(errno));
	int ro = !!(st.f_flag & ST_RDONLY);
	fact_begin(name, method);
	key("value");
	open_('{');
	kstr("path", path);
	kbool("access_w_ok", ok);
	kstr("access_errno", ok ? NULL : errno_name(access_errno));
	kbool("read_only_mount", ro);
	kbool("writable", ok && !ro);
	close_('}');
	close_('}');
}

static void fact_block_devices(void)
{
	const char *method = "/dev: every entry lstat'ed (symlinks not followed), S_ISBLK";
	DIR *d = opendir("/dev");
	if (!d)
		return fact_error("block_devices", method, errno_text(errno));
	fact_begin("block_devices", method);
	key("value");
	open_('[');
	int listed = 0;
	for (struct dirent *e; (e = readdir(d));) {
		struct stat st;
		if (e->d_name[0] == '.' || fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) || !S_ISBLK(st.st_mode))
			continue;
		if (listed++ >= 4 * MAX_LISTED)
			break;
		open_('{');
		kstr("name", e->d_name);
		kint("major", major(st.st_rdev));
		kint("minor", minor(st.st_rdev));
		close_('}');
	}
	closedir(d);
	close_(']');
	close_('}');
}

static void fact_kernel_log(void)
{
	fact_begin("kernel_log", "syslog(SYSLOG_ACTION_SIZE_BUFFER) (its size only); open(/dev/kmsg, O_RDONLY|O_NONBLOCK), closed at once");
	key("value");
	open_('{');
	int size = klogctl(10 /* SYSLOG_ACTION_SIZE_BUFFER */, NULL, 0);
	int size_errno = size < 0 ? errno : 0;
	key("syslog_size_bytes");
	if (size < 0)
		jnull();
	else
		jint(size);
	kstr("syslog_errno", size < 0 ? errno_name(size_errno) : NULL);
	int fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	int kmsg_errno = fd < 0 ? errno : 0;
	if (fd >= 0)
		close(fd);
	kbool("kmsg_readable", fd >= 0);
	kstr("kmsg_errno", fd < 0 ? errno_name(kmsg_errno) : NULL);
	close_('}');
	close_('}');
}

static void fact_kallsyms(void)
{
	const char *method = "/proc/kallsyms: the addresses of its first 8 lines";
	char buf[1024];
	ssize_t n = read_file("/proc/kallsyms", buf, sizeof buf);
	if (n < 0)
		return fact_error("kallsyms", method, errno_text((int)-n));
	int lines = 0, nonzero = 0;
	for (char *save = NULL, *line = strtok_r(buf, "\n", &save); line && lines < 8; line = strtok_r(NULL, "\n", &save)) {
		if (!strchr(line, ' '))
			break; /* the last, cut line */
		lines++;
		nonzero |= strtoull(line, NULL, 16) != 0;
	}
	fact_begin("kallsyms", method);
	key("value");
	open_('{');
	kint("lines_read", lines);
	kbool("nonzero_addresses", nonzero);
	close_('}');
	close_('}');
}

static void fact_namespaces(void)
{
	static const char *kinds[] = {"cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts"};
	fact_begin("namespaces", "readlink(/proc/self/ns/KIND) (null: unreadable)");
	key("value");
	open_('{');
	for (size_t i = 0; i < sizeof kinds / sizeof *kinds; i++) {
		char path[64], link[128];
		snprintf(path, sizeof path, "/proc/self/ns/%s", kinds[i]);
		ssize_t n = readlink(path, link, sizeof link - 1);
		key(kinds[i]);
		if (n < 0) {
			jnull();
		} else {
			link[n] = '\0';
			jstr(link);
		}
	}
	close_('}');
	close_('}');
}

static void fact_capabilities(void)
{
	const char *method = "capget(2) (effective, permitted); prctl(PR_CAPBSET_READ) per capability (bounding)";
	struct __user_cap_header_struct head = {_LINUX_CAPABILITY_VERSION_3, 0};
	struct __user_cap_data_struct data[2];
	if (syscall(SYS_capget, &head, data))
		return fact_error("capabilities", method, errno_text(errno));
	unsigned long long eff = (unsigned long long)data[1].effective << 32 | data[0].effective;
	unsigned long long prm = (unsigned long long)data[1].permitted << 32 | data[0].permitted;
	unsigned long long bnd = 0;
	for (int cap = 0; cap < 64; cap++) {
		int r = prctl(PR_CAPBSET_READ, cap, 0, 0, 0);
		if (r < 0)
			break;
		bnd |= (unsigned long long)(r > 0) << cap;
	}
	char hex[3][20];
	snprintf(hex[0], sizeof hex[0], "%016llx", eff);
	snprintf(hex[1], sizeof hex[1], "%016llx", prm);
	snprintf(hex[2], sizeof hex[2], "%016llx", bnd);
	fact_begin("capabilities", method);
	key("value");
	open_('{');
	kstr("effective", hex[0]);
	kstr("permitted", hex[1]);
	kstr("bounding", hex[2]);
	close_('}');
	close_('}');
}

static void fact_seccomp(void)
{
	const char *method = "/proc/self/status: Seccomp, Seccomp_filters, NoNewPrivs";
	char buf[8192];
	ssize_t n = read_file("/proc/self/status", buf, sizeof buf);
	if (n < 0)
		return fact_error("seccomp", method, errno_text((int)-n));
	char *mode = strstr(buf, "\nSeccomp:"), *filters = strstr(buf, "\nSeccomp_filters:"), *nnp = strstr(buf, "\nNoNewPrivs:");
	if (!mode)
		return fact_error("seccomp", method, "no Seccomp line");
	fact_begin("seccomp", method);
	key("value");
	open_('{');
	kint("mode", strtol(mode + 9, NULL, 10));
	key("filters");
	if (filters)
		jint(strtol(filters + 17, NULL, 10));
	else
		jnull();
	key("no_new_privs");
	if (nnp)
		jbool(strtol(nnp + 12, NULL, 10) != 0);
	else
		jnull();
	close_('}');
	close_('}');
}

/* /proc/self/uid_map with its spacing collapsed: "0 0 4294967295", lines joined by "; ". */
static void fact_uid_map(void)
{
	char buf[4096], out[4096] = "";
	ssize_t n = read_file("/proc/self/uid_map", buf, sizeof buf);
	if (n < 0)
		return fact_error("uid_map", "/proc/self/uid_map", errno_text((int)-n));
	for (char *save = NULL, *line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char a[24], b[24], c[24];
		if (sscanf(line, "%23s %23s %23s", a, b, c) != 3)
			continue;
		size_t used = strlen(out);
		snprintf(out + used, sizeof out - used, "%s%s %s %s", used ? "; " : "", a, b, c);
	}
	fact_string("uid_map", "/proc/self/uid_map", out);
}

static void facts(void)
{
	key("facts");
	open_('{');
	facts_uname();
	fact_file_line("boot_id", "/proc/sys/kernel/random/boot_id", "/proc/sys/kernel/random/boot_id");
	fact_mem_total();
	facts_cpus();
	fact_cgroup_limit("memory_limit", "memory", "memory.max", "memory.limit_in_bytes", NULL);
	fact_cgroup_limit("cpu_limit", "cpu", "cpu.max", "cpu.cfs_quota_us", "cpu.cfs_period_us");
	fact_uptime();
	fact_interfaces();
	facts_processes();
	fact_mounts();
	fact_writable("proc_sys_writable", "/proc/sys/kernel/core_pattern");
	fact_writable("sys_writable", "/sys");
	fact_block_devices();
	fact_kernel_log();
	fact_kallsyms();
	fact_namespaces();
	fact_capabilities();
	fact_seccomp();
	fact_uid_map();
	close_('}');
}

/* ------------------------------------------------------------------ operations */

struct outcome {
	long ret;
	int err;
	char skipped[200];
};

/* Why an operation was not made (set in the child; an empty string: it was made). */
static char *skip_reason;
static int nx_exists; /* the "nonexistent" prefix exists here: operations that rely on it are skipped */

static long skip(const char *why)
{
	snprintf(skip_reason, sizeof ((struct outcome *)0)->skipped, "%s", why);
	return 0;
}

/* Whether an operation that relies on NX not existing may be made; if not, it is skipped with why. */
static int nx_absent(void)
{
	if (nx_exists)
		skip(NX " exists here (or cannot be looked up): not made, since the call relies on that path not existing");
	return !nx_exists;
}

static long op_mount(void) { return mount(NULL, "/", NULL, MS_MOVE, NULL); }
static long op_umount2(void) { return umount2("/proc/self/fd", 0); }
static long op_pivot_root(void) { return nx_absent() ? syscall(SYS_pivot_root, NX "/new", NX "/old") : 0; }
static long op_chroot(void) { return chroot("/"); }
static long op_fsopen(void) { return syscall(SYS_fsopen, "tmpfs", 0x80000000u); }
static long op_fsmount(void) { return syscall(SYS_fsmount, -1, 0x80000000u, 0); }
static long op_fspick(void) { return nx_absent() ? syscall(SYS_fspick, AT_FDCWD, NX "/x", 0x80000000u) : 0; }
static long op_open_tree(void) { return nx_absent() ? syscall(SYS_open_tree, AT_FDCWD, NX "/x", 1u /* OPEN_TREE_CLONE */) : 0; }

static long op_move_mount(void)
{
	if (!nx_absent())
		return 0;
	return syscall(SYS_move_mount, -1, NX "/from", -1, NX "/to", 0x80000000u);
}

static long op_unshare_user(void) { return unshare(CLONE_NEWUSER); }
static long op_unshare_mount(void) { return unshare(CLONE_NEWNS); }
static long op_unshare_net(void) { return unshare(CLONE_NEWNET); }

static long op_setns_net(void)
{
	int fd = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		char why[160];
		snprintf(why, sizeof why, "/proc/self/ns/net could not be opened: %s", errno_name(errno));
		return skip(why);
	}
	return setns(fd, CLONE_NEWNET);
}

static long op_clone3(void) { return syscall(SYS_clone3, NULL, 0); }
/* Anchored on /proc, whose filesystem decodes no handles: a permitted caller gets ESTALE. The handle is
 * well-formed, since kernels from 6.13 on read it (EFAULT, EINVAL) before the capability check. */
static long op_open_by_handle_at(void)
{
	struct {
		struct file_handle head;
		unsigned char bytes[8];
	} handle;
	int fd = open("/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		char why[160];
		snprintf(why, sizeof why, "/proc could not be opened: %s", errno_name(errno));
		return skip(why);
	}
	memset(&handle, 0, sizeof handle);
	handle.head.handle_bytes = sizeof handle.bytes;
	handle.head.handle_type = 1; /* FILEID_INO32_GEN, inode 0 */
	return syscall(SYS_open_by_handle_at, fd, &handle, O_RDONLY);
}

static long op_name_to_handle_at(void)
{
	return nx_absent() ? syscall(SYS_name_to_handle_at, AT_FDCWD, NX "/x", NULL, NULL, 0) : 0;
}

static long op_init_module(void) { return syscall(SYS_init_module, NULL, 0, ""); }
static long op_finit_module(void) { return syscall(SYS_finit_module, -1, "", 0); }
static long op_delete_module(void) { return syscall(SYS_delete_module, NULL, 0); }
static long op_kexec_load(void) { return syscall(SYS_kexec_load, 0, 17, NULL, 0x8000ul); }
static long op_kexec_file_load(void) { return syscall(SYS_kexec_file_load, -1, -1, 0, NULL, 0x8000ul); }

static long op_bpf(void)
{
	union bpf_attr attr;
	memset(&attr, 0, sizeof attr);
	return syscall(SYS_bpf, BPF_PROG_LOAD, &attr, sizeof attr);
}

static long op_perf_event_open(void) { return syscall(SYS_perf_event_open, NULL, 0, -1, -1, 0); }
static long op_userfaultfd(void) { return syscall(SYS_userfaultfd, 0x40000000); }
static long op_io_uring_setup(void) { return syscall(SYS_io_uring_setup, 0, NULL); }
static long op_keyctl(void) { return syscall(SYS_keyctl, 9999, 0, 0, 0, 0); }
static long op_add_key(void) { return syscall(SYS_add_key, NULL, NULL, NULL, 0, 0); }
static long op_ptrace(void) { return ptrace(PTRACE_ATTACH, -1, NULL, NULL); }
static long op_process_vm_readv(void) { return syscall(SYS_process_vm_readv, -1, NULL, 0, NULL, 0, 1ul); }

static long op_mknod_block(void)
{
	return nx_absent() ? syscall(SYS_mknodat, AT_FDCWD, NX "/blk", S_IFBLK | 0600, makedev(7, 0)) : 0;
}

static long op_swapon(void) { return nx_absent() ? swapon(NX "/swap", 0) : 0; }
static long op_swapoff(void) { return nx_absent() ? swapoff(NX "/swap") : 0; }
static long op_syslog(void) { return klogctl(8 /* SYSLOG_ACTION_CONSOLE_LEVEL */, NULL, 0); }

static long op_quotactl(void)
{
	return nx_absent() ? quotactl(QCMD(Q_GETQUOTA, USRQUOTA), NX "/dev", 0, NULL) : 0;
}

#if defined(__x86_64__) || defined(__i386__)
static long op_iopl(void) { return syscall(SYS_iopl, 4); }
static long op_ioperm(void) { return syscall(SYS_ioperm, 0ul, 0ul, 1); }
#else
static long op_iopl(void) { return skip("iopl exists on x86 only"); }
static long op_ioperm(void) { return skip("ioperm exists on x86 only"); }
#endif

static long op_clock_settime(void) { return syscall(SYS_clock_settime, 100, NULL); }

static long op_lookup_dcookie(void)
{
#ifdef SYS_lookup_dcookie
	return syscall(SYS_lookup_dcookie, 0ull, NULL, 0ul);
#else
	return skip("lookup_dcookie has no number on this architecture");
#endif
}

static long op_fanotify_init(void) { return syscall(SYS_fanotify_init, 0x80000000u, O_RDONLY); }

struct op {
	const char *id, *syscalls, *call, *harmless;
	long (*fn)(void);
};

/* The order is the document's. `syscalls` is space-separated. */
static const struct op ops[] = {
	{"mount", "mount", "mount(NULL, \"/\", NULL, MS_MOVE, NULL)",
	 "MS_MOVE with no source: refused (EINVAL) after the capability check, before any lookup of a source", op_mount},
	{"umount2", "umount2", "umount2(\"/proc/self/fd\", 0)",
	 "the target is the probe's own /proc/self/fd, not a mount point: refused (EINVAL) after the capability check",
	 op_umount2},
	{"pivot_root", "pivot_root", "pivot_root(\"" NX "/new\", \"" NX "/old\")", "neither path exists", op_pivot_root},
	{"chroot", "chroot", "chroot(\"/\") in a child that exits at once",
	 "the root it sets is the one the child has already; the child exits at once", op_chroot},
	{"fsopen", "fsopen", "fsopen(\"tmpfs\", 0x80000000)", "an invalid flag: refused (EINVAL) after the capability check",
	 op_fsopen},
	{"fsmount", "fsmount", "fsmount(-1, 0x80000000, 0)", "an invalid flag and no filesystem context (fd -1)", op_fsmount},
	{"fspick", "fspick", "fspick(AT_FDCWD, \"" NX "/x\", 0x80000000)", "an invalid flag and a path that does not exist",
	 op_fspick},
	{"open_tree", "open_tree", "open_tree(AT_FDCWD, \"" NX "/x\", OPEN_TREE_CLONE)",
	 "the path does not exist (and a detached copy would go with the child)", op_open_tree},
	{"move_mount", "move_mount", "move_mount(-1, \"" NX "/from\", -1, \"" NX "/to\", 0x80000000)",
	 "an invalid flag, fds -1 and paths that do not exist", op_move_mount},
	{"unshare_user", "unshare", "unshare(CLONE_NEWUSER) in a child that exits at once",
	 "the new namespace is the child's only, and the child exits at once", op_unshare_user},
	{"unshare_mount", "unshare", "unshare(CLONE_NEWNS) in a child that exits at once",
	 "the new namespace is the child's only, and the child exits at once", op_unshare_mount},
	{"unshare_net", "unshare", "unshare(CLONE_NEWNET) in a child that exits at once",
	 "the new namespace is the child's only, and the child exits at once", op_unshare_net},
	{"setns_net", "openat setns", "setns(open(\"/proc/self/ns/net\"), CLONE_NEWNET) in a child that exits at once",
	 "it joins the network namespace it is already in; the child exits at once", op_setns_net},
	{"clone3", "clone3", "clone3(NULL, 0)", "size 0: refused (EINVAL) before any process is made", op_clone3},
	{"open_by_handle_at", "openat open_by_handle_at",
	 "open_by_handle_at(open(\"/proc\"), {8 bytes, FILEID_INO32_GEN, inode 0}, O_RDONLY)",
	 "a handle of inode 0 on /proc, which decodes no handles: refused (ESTALE) after the capability check",
	 op_open_by_handle_at},
	{"name_to_handle_at", "name_to_handle_at", "name_to_handle_at(AT_FDCWD, \"" NX "/x\", NULL, NULL, 0)",
	 "the path does not exist", op_name_to_handle_at},
	{"init_module", "init_module", "init_module(NULL, 0, \"\")", "an empty module image (length 0)", op_init_module},
	{"finit_module", "finit_module", "finit_module(-1, \"\", 0)", "no file (fd -1)", op_finit_module},
	{"delete_module", "delete_module", "delete_module(NULL, 0)", "no module name (NULL)", op_delete_module},
	{"kexec_load", "kexec_load", "kexec_load(0, 17, NULL, 0x8000)",
	 "an invalid flag and 17 segments (more than KEXEC_SEGMENT_MAX), none given", op_kexec_load},
	{"kexec_file_load", "kexec_file_load", "kexec_file_load(-1, -1, 0, NULL, 0x8000)",
	 "an invalid flag (not KEXEC_FILE_UNLOAD) and no kernel file (fd -1)", op_kexec_file_load},
	{"bpf", "bpf", "bpf(BPF_PROG_LOAD, {all zero}, sizeof attr)", "a program of 0 instructions: refused (E2BIG)", op_bpf},
	{"perf_event_open", "perf_event_open", "perf_event_open(NULL, 0, -1, -1, 0)", "no attributes (NULL): EFAULT",
	 op_perf_event_open},
	{"userfaultfd", "userfaultfd", "userfaultfd(0x40000000)", "an invalid flag: refused (EINVAL) after the permission check",
	 op_userfaultfd},
	{"io_uring_setup", "io_uring_setup", "io_uring_setup(0, NULL)", "no parameters (NULL): EFAULT", op_io_uring_setup},
	{"keyctl", "keyctl", "keyctl(9999, 0, 0, 0, 0)", "no such command (EOPNOTSUPP)", op_keyctl},
	{"add_key", "add_key", "add_key(NULL, NULL, NULL, 0, 0)", "no key type (NULL): EFAULT", op_add_key},
	{"ptrace", "ptrace", "ptrace(PTRACE_ATTACH, -1, NULL, NULL)", "no process has PID -1 (ESRCH)", op_ptrace},
	{"process_vm_readv", "process_vm_readv", "process_vm_readv(-1, NULL, 0, NULL, 0, 1)",
	 "an invalid flag, no vectors, PID -1", op_process_vm_readv},
	{"mknod_block", "mknodat", "mknodat(AT_FDCWD, \"" NX "/blk\", S_IFBLK|0600, makedev(7, 0))",
	 "its directory does not exist", op_mknod_block},
	{"swapon", "swapon", "swapon(\"" NX "/swap\", 0)", "the file does not exist", op_swapon},
	{"swapoff", "swapoff", "swapoff(\"" NX "/swap\")", "the file does not exist", op_swapoff},
	{"syslog", "syslog", "syslog(SYSLOG_ACTION_CONSOLE_LEVEL, NULL, 0)",
	 "level 0 is out of range (1-8): refused (EINVAL) after the permission check", op_syslog},
	{"quotactl", "quotactl", "quotactl(QCMD(Q_GETQUOTA, USRQUOTA), \"" NX "/dev\", 0, NULL)",
	 "a read command, on a device that does not exist, with no buffer", op_quotactl},
	{"iopl", "iopl", "iopl(4)", "level 4 is out of range (0-3): EINVAL", op_iopl},
	{"ioperm", "ioperm", "ioperm(0, 0, 1)", "an empty port range: EINVAL", op_ioperm},
	{"clock_settime", "clock_settime", "clock_settime(100, NULL)", "no such clock (100) and no time given", op_clock_settime},
	{"lookup_dcookie", "lookup_dcookie", "lookup_dcookie(0, NULL, 0)", "cookie 0 and no buffer", op_lookup_dcookie},
	{"fanotify_init", "fanotify_init", "fanotify_init(0x80000000, O_RDONLY)",
	 "an invalid flag: refused (EINVAL) after the capability check", op_fanotify_init},
};

static volatile pid_t current_child;
static const char *volatile phase = "starting";

static struct outcome run_op(const struct op *op, int *signal_out)
{
	struct outcome o;
	int fds[2];
	memset(&o, 0, sizeof o);
	*signal_out = 0;
	if (pipe2(fds, O_CLOEXEC)) {
		snprintf(o.skipped, sizeof o.skipped, "pipe2 failed: %s", errno_name(errno));
		return o;
	}
	pid_t pid = fork();
	if (pid < 0) {
		snprintf(o.skipped, sizeof o.skipped, "fork failed: %s", errno_name(errno));
		close(fds[0]);
		close(fds[1]);
		return o;
	}
	if (pid == 0) {
		close(fds[0]);
		skip_reason = o.skipped;
		errno = 0;
		o.ret = op->fn();
		o.err = o.ret < 0 ? errno : 0;
		ssize_t w = write(fds[1], &o, sizeof o);
		_exit(w == (ssize_t)sizeof o ? 0 : 1);
	}
	current_child = pid;
	close(fds[1]);
	size_t got = 0;
	while (got < sizeof o) {
		ssize_t r = read(fds[0], (char *)&o + got, sizeof o - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	close(fds[0]);
	int status = 0;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	current_child = 0;
	if (got < sizeof o) {
		memset(&o, 0, sizeof o);
		if (WIFSIGNALED(status))
			*signal_out = WTERMSIG(status);
		else
			snprintf(o.skipped, sizeof o.skipped, "the child exited %d without an answer", WEXITSTATUS(status));
	}
	return o;
}

static void operations(void)
{
	struct stat st;
	nx_exists = !(lstat(NX, &st) && errno == ENOENT);
	key("operations");
	open_('[');
	for (size_t i = 0; i < sizeof ops / sizeof *ops; i++) {
		int sig;
		phase = ops[i].id;
		struct outcome o = run_op(&ops[i], &sig);
		int made = !o.skipped[0] && !sig;
		open_('{');
		kstr("id", ops[i].id);
		key("syscalls");
		open_('[');
		char names[128];
		snprintf(names, sizeof names, "%s", ops[i].syscalls);
		for (char *save = NULL, *name = strtok_r(names, " ", &save); name; name = strtok_r(NULL, " ", &save))
			jstr(name);
		close_(']');
		kstr("call", ops[i].call);
		kstr("harmless", ops[i].harmless);
		key("ret");
		if (made)
			jint(o.ret);
		else
			jnull();
		key("errno");
		if (made && o.ret < 0)
			jint(o.err);
		else
			jnull();
		kstr("errno_name", made && o.ret < 0 ? errno_name(o.err) : NULL);
		key("signal");
		if (sig)
			jint(sig);
		else
			jnull();
		kstr("skipped", o.skipped[0] ? o.skipped : NULL);
		close_('}');
	}
	close_(']');
}

/* ------------------------------------------------------------------ the user, the timeout, main */

static void say(const char *s) { (void)!write(2, s, strlen(s)); }

/* Async-signal-safe only: kill, write, strlen, _exit. */
static void on_alarm(int sig)
{
	(void)sig;
	pid_t child = current_child;
	if (child > 0)
		kill(child, SIGKILL);
	say("explorer-inside: --timeout reached while ");
	say(phase);
	say("; nothing printed\n");
	_exit(124);
}

/* Become uid:gid with no supplementary groups; NULL, or what failed. Verified with getres[ug]id. */
static const char *drop_user(uid_t uid, gid_t gid)
{
	static char why[200];
	uid_t ru, eu, su;
	gid_t rg, eg, sg;
	if (setgroups(0, NULL) && getgroups(0, NULL) != 0) {
		snprintf(why, sizeof why, "setgroups([]): %s", errno_text(errno));
		return why;
	}
	if (setresgid(gid, gid, gid)) {
		snprintf(why, sizeof why, "setresgid(%u): %s", (unsigned)gid, errno_text(errno));
		return why;
	}
	if (setresuid(uid, uid, uid)) {
		snprintf(why, sizeof why, "setresuid(%u): %s", (unsigned)uid, errno_text(errno));
		return why;
	}
	if (getresuid(&ru, &eu, &su) || getresgid(&rg, &eg, &sg) || ru != uid || eu != uid || su != uid || rg != gid ||
	    eg != gid || sg != gid || getgroups(0, NULL) != 0) {
		snprintf(why, sizeof why, "after the drop the process is not %u:%u with no groups", (unsigned)uid, (unsigned)gid);
		return why;
	}
	/* A process started as that user is dumpable (its /proc/self files its own); a setuid one is not. */
	prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
	return NULL;
}

static void user_block(int requested, long long uid, long long gid, const char *error)
{
	uid_t ru, eu, su;
	gid_t rg, eg, sg, groups[256];
	getresuid(&ru, &eu, &su);
	getresgid(&rg, &eg, &sg);
	int ngroups = getgroups(256, groups);
	key("user");
	open_('{');
	key("requested");
	if (requested) {
		open_('{');
		kint("uid", uid);
		kint("gid", gid);
		close_('}');
	} else {
		jnull();
	}
	kbool("assumed", error == NULL);
	kstr("error", error);
	kint("uid", ru);
	kint("euid", eu);
	kint("suid", su);
	kint("gid", rg);
	kint("egid", eg);
	kint("sgid", sg);
	key("groups");
	open_('[');
	for (int i = 0; i < ngroups; i++)
		jint(groups[i]);
	close_(']');
	close_('}');
}

static void usage(const char *why)
{
	dprintf(2, "explorer-inside: %s\nusage: explorer-inside [--uid N --gid N | --as-pid PID] [--timeout S] [--sleep-for-test S]\n", why);
	_exit(2);
}

static long long number_arg(int argc, char **argv, int *i)
{
	char *end;
	if (*i + 1 >= argc)
		usage("an option lacks its value");
	long long v = strtoll(argv[++*i], &end, 10);
	if (*end || v < 0 || v > 4294967294LL)
		usage("a value is not a number in range");
	return v;
}

/* The effective uid and gid of process `pid` (its /proc/PID/status Uid: and Gid: lines); NULL, or why not. */
static const char *ids_of(long long pid, long long *uid, long long *gid)
{
	static char why[160];
	char path[64], buf[4096];
	snprintf(path, sizeof path, "/proc/%lld/status", pid);
	ssize_t n = read_file(path, buf, sizeof buf - 1);
	if (n < 0) {
		snprintf(why, sizeof why, "could not read %s: %s", path, errno_text((int)-n));
		return why;
	}
	buf[n] = 0;
	unsigned long ru, eu, rg, eg;
	const char *u = strstr(buf, "\nUid:"), *g = strstr(buf, "\nGid:");
	if (!u || !g || sscanf(u, "\nUid: %lu %lu", &ru, &eu) != 2 || sscanf(g, "\nGid: %lu %lu", &rg, &eg) != 2) {
		snprintf(why, sizeof why, "%s has no Uid: and Gid: lines", path);
		return why;
	}
	*uid = (long long)eu;
	*gid = (long long)eg;
	return NULL;
}

static double elapsed_ms(const struct timespec *since)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - since->tv_sec) * 1e3 + (double)(now.tv_nsec - since->tv_nsec) / 1e6;
}

int main(int argc, char **argv)
{
	long long uid = -1, gid = -1, timeout = 0, sleep_s = 0, as_pid = -1;
	struct timespec start;
	clock_gettime(CLOCK_MONOTONIC, &start);
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--uid"))
			uid = number_arg(argc, argv, &i);
		else if (!strcmp(argv[i], "--gid"))
			gid = number_arg(argc, argv, &i);
		else if (!strcmp(argv[i], "--timeout"))
			timeout = number_arg(argc, argv, &i);
		else if (!strcmp(argv[i], "--sleep-for-test"))
			sleep_s = number_arg(argc, argv, &i);
		else if (!strcmp(argv[i], "--as-pid"))
			as_pid = number_arg(argc, argv, &i);
		else
			usage("unknown argument");
	}
	if ((uid < 0) != (gid < 0))
		usage("--uid and --gid go together");
	if (as_pid >= 0 && uid >= 0)
		usage("--as-pid or --uid/--gid, not both");
	if (timeout > 0) {
		signal(SIGALRM, on_alarm);
		alarm((unsigned)timeout);
	}
	const char *drop_error = as_pid >= 0 ? ids_of(as_pid, &uid, &gid) : NULL;
	if (as_pid >= 0 && drop_error)
		uid = gid = 0; /* reported as asked for nothing known: the document says why */
	if (!drop_error && uid >= 0)
		drop_error = drop_user((uid_t)uid, (gid_t)gid);
	open_('{');
	kstr("probe", PROBE_FORMAT);
	kint("pid", getpid());
	user_block(uid >= 0 || as_pid >= 0, uid, gid, drop_error);
	if (drop_error) {
		key("facts");
		jnull();
		key("operations");
		jnull();
	} else {
		if (sleep_s > 0) {
			phase = "sleeping (--sleep-for-test)";
			struct timespec t = {(time_t)sleep_s, 0};
			while (nanosleep(&t, &t) && errno == EINTR)
				;
		}
		phase = "reading the facts";
		read_mounts();
		facts();
		operations();
	}
	char ms[32];
	snprintf(ms, sizeof ms, "%.3f", elapsed_ms(&start));
	key("elapsed_ms");
	sep();
	emits(ms);
	close_('}');
	emit("\n", 1);
	phase = "printing";
	for (size_t done = 0; done < out_len;) {
		ssize_t w = write(1, out_p + done, out_len - done);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			die("could not write the document to stdout");
		done += (size_t)w;
	}
	return drop_error ? 3 : 0;
}
