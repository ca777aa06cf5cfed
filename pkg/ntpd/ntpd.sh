#!/bin/busybox sh
# ntpd.sh [-s] [-v] [-f FILE]: OpenNTPD in the foreground; see build.yml.
# The directories the package's scripts would make: its control socket's, its drift
# file's, and the empty root it chroots to.
/bin/busybox mkdir -p /var/lib/openntpd/run /var/lib/openntpd/db /run/openntpd
exec /usr/sbin/ntpd -d "$@"
