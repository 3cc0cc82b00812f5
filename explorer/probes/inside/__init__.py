"""The inside probe (issue 31): the level of isolation as seen from where the workload runs.

explorer-inside.c is one static program, built here (build.py) and run where the workload runs, as
the workload's user and as the side's root; it prints one JSON document of what it sees of the host
(facts) and of what the kernel answered to escape-relevant calls made harmlessly (operations).
operations.yaml says why each operation matters; view.py classifies the answers and compares the
facts with the host's own; run.py runs it natively (the host's reference, the native row) and parses
what it prints into explorer/result/inside.py's models.
"""
