#!/bin/busybox sh
# metadata [cdrom|openstack]...: user data (and, from OpenStack, the hostname and SSH keys)
# into /run/config, from the first provider that has them (default: cdrom); see build.yml.
set -eu
PATH=/usr/sbin:/usr/bin:/sbin:/bin
config=/run/config

say() { echo "metadata: $*" >&2; }
fail() { say "$*"; exit 1; }

# The user data in $1, as given by provider $2, into /run/config (and its file tree).
apply_userdata() {
	mkdir -p "$config"
	cp "$1" "$config/userdata"
	say "user data from $2: $(wc -c <"$1") bytes in $config/userdata"
	jq -e 'type == "object"' "$1" >/dev/null 2>&1 || return 0
	entries=$(mktemp)
	jq -r -f /usr/share/metadata/tree.jq "$1" >"$entries" ||
		fail "the user data is JSON but not a file tree (see above)"
	tab=$(printf '\t')
	while IFS="$tab" read -r kind perm path content; do
		if [ "$kind" = d ]; then
			mkdir -p "$config/$path"
		else
			printf '%s' "$content" | base64 -d >"$config/$path"
		fi
		chmod "$perm" "$config/$path"
		say "$config/$path"
	done <"$entries"
	rm -f "$entries"
}

# A cidata volume (osbuilder run --data, LinuxKit's run -data): its user-data or config.
cdrom() {
	device=$(blkid -c /dev/null -t LABEL=cidata -o device 2>/dev/null | head -n 1)
	if [ -z "$device" ]; then
		say "cdrom: no cidata volume"
		return 1
	fi
	mnt=$(mktemp -d)
	trap 'umount "$mnt" 2>/dev/null || true; rmdir "$mnt"' EXIT
	mount -t iso9660 -o ro "$device" "$mnt" || fail "$device: cannot mount it"
	for name in user-data config; do
		if [ -f "$mnt/$name" ]; then
			mkdir -p "$config"
			echo cdrom >"$config/provider"
			apply_userdata "$mnt/$name" "$device"
			return 0
		fi
	done
	fail "$device holds neither user-data nor config"
}

# URL $1 into file $2, in at most 2 s (busybox's own wget -T crashes in Debian 12's
# busybox-static: its timeout applet stands in).
fetch() {
	busybox timeout 2 busybox wget -q -O "$2" "$1" 2>/dev/null
}

# OpenStack's metadata service (Nova): the hostname, the SSH keys of the instance's key
# pair into ssh/authorized_keys (as LinuxKit's openstack provider), the user data if any.
openstack() {
	base=http://169.254.169.254/openstack/latest
	work=$(mktemp -d)
	tries=1
	# The network may still be coming up (a DHCP lease in another onboot container).
	until fetch "$base/meta_data.json" "$work/meta_data.json"; do
		if [ "$tries" -ge 3 ]; then
			say "openstack: no metadata service at 169.254.169.254"
			return 1
		fi
		tries=$((tries + 1))
		sleep 1
	done
	jq -e 'type == "object"' "$work/meta_data.json" >/dev/null 2>&1 ||
		fail "openstack: meta_data.json is not a JSON object"
	mkdir -p "$config"
	echo openstack >"$config/provider"
	name=$(jq -r '.hostname // empty | tostring' "$work/meta_data.json")
	if [ -n "$name" ]; then
		printf '%s' "$name" >"$config/hostname"
	fi
	keys=$(jq -r '.public_keys // {} | to_entries[] | .value' "$work/meta_data.json")
	if [ -n "$keys" ]; then
		mkdir -p "$config/ssh"
		chmod 0700 "$config/ssh"
		printf '%s\n' "$keys" >"$config/ssh/authorized_keys"
		chmod 0600 "$config/ssh/authorized_keys"
		say "openstack: $(printf '%s\n' "$keys" | wc -l) SSH key(s) in $config/ssh/authorized_keys"
	fi
	if fetch "$base/user_data" "$work/user_data"; then
		apply_userdata "$work/user_data" openstack
	else
		say "openstack: no user data"
	fi
	rm -rf "$work"
}

providers=${*:-cdrom}
found=
for provider in $providers; do
	case "$provider" in
	cdrom | openstack) ;;
	*) fail "provider $provider: use cdrom (a cidata volume) or openstack" ;;
	esac
done
for provider in $providers; do
	if "$provider"; then
		found=$provider
		break
	fi
done
if [ -z "$found" ]; then
	say "no user data: none from $providers"
	exit 0
fi
if [ -f "$config/hostname" ]; then
	hostname "$(cat "$config/hostname")"
	say "hostname: $(hostname)"
fi
