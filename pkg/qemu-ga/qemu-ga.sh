#!/bin/busybox sh
# qemu-ga.sh [QEMU-GA OPTIONS]: the agent on the virtio port named org.qemu.guest_agent.0.
PATH=/usr/sbin:/usr/bin:/sbin:/bin
name=org.qemu.guest_agent.0
mkdir -p /run  # its pid and state files (the image has no /run)
for try in $(seq 100); do
	for port in /sys/class/virtio-ports/*; do
		if [ "$(cat "$port/name" 2>/dev/null)" = "$name" ]; then
			echo "qemu-ga: $name is /dev/${port##*/}" >&2
			exec /usr/sbin/qemu-ga --method=virtio-serial --path="/dev/${port##*/}" \
				--pidfile=/run/qemu-ga.pid --statedir=/run "$@"
		fi
	done
	sleep 0.2
done
echo "qemu-ga: no virtio port named $name (the hypervisor attached no agent channel)" >&2
exit 1
