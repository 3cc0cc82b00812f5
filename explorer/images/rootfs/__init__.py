"""A Debian root filesystem as explorer handles it on the host: unpacked or exported
(export.py), read for its users, paths and executables (guest_config.py), its dpkg database
and sizes (dpkg_db.py), and the static busybox put into it (busybox.py). The microVM, the
full-OS image and the native reference all use it; it uses none of them."""
