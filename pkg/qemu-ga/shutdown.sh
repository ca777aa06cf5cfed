#!/bin/busybox sh
# shutdown [-h] -P|-r|-H [+0] [MESSAGE], as qemu-ga calls it ("-h -P +0 hypervisor
# initiated shutdown"): asks the init (PID 1, busybox init's signals), which stops the
# system cleanly. -h alone powers off.
signal=USR2
for word in "$@"; do
	case "$word" in
	-P) signal=USR2 ;;
	-r) signal=TERM ;;
	-H) signal=USR1 ;;
	esac
done
exec /bin/busybox kill -s "$signal" 1
