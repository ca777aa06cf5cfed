#!/bin/busybox sh
# One getty per console named on the kernel command line (console=ttyS0 ...).
/bin/busybox --install -s 2>/dev/null
[ -f /hostroot/etc/getty.shadow ] && cp /hostroot/etc/getty.shadow /etc/shadow
mkdir -p -m 0700 /root   # root's home (login changes to it), which busybox's Debian root lacks
login=/bin/login
[ "$INSECURE" = "true" ] && login=/bin/sh   # no password asked: a root shell
consoles=$(tr ' ' '\n' < /proc/cmdline | sed -n 's/^console=\([^,]*\).*/\1/p')
for tty in ${consoles:-ttyS0}; do
    [ -c "/dev/$tty" ] || continue
    [ "$tty" = tty0 ] && continue   # the VGA console: not on a headless VM
    ( while true; do
        /bin/busybox setsid /bin/busybox getty -n -l "$login" -L 115200 "$tty" vt100
        sleep 1
      done ) &
done
wait
