#!/bin/busybox sh
# metadata [cdrom|openstack|aws|gcp|digitalocean|hetzner]...: user data (and, from a cloud, the hostname and SSH
# keys) into /run/config, from the first provider that has them (default: cdrom); see
# build.yml.
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

# The network may still be coming up (a DHCP lease in another onboot container): command
# $2... is tried 3 times, a second apart; $1 names the provider when none answers.
with_retries() {
	provider=$1
	shift
	for try in 1 2 3; do
		"$@" && return 0
		[ "$try" = 3 ] || sleep 1
	done
	say "$provider: no metadata service at 169.254.169.254"
	return 1
}

# The SSH keys in file $1 (one per line) into ssh/authorized_keys; $2 names the provider.
write_keys() {
	[ -s "$1" ] || return 0
	mkdir -p "$config/ssh"
	chmod 0700 "$config/ssh"
	grep -v '^[[:space:]]*$' "$1" >"$config/ssh/authorized_keys" || true
	chmod 0600 "$config/ssh/authorized_keys"
	say "$2: $(wc -l <"$config/ssh/authorized_keys") SSH key(s) in $config/ssh/authorized_keys"
}

# OpenStack's metadata service (Nova): the hostname, the SSH keys of the instance's key
# pair into ssh/authorized_keys (as LinuxKit's openstack provider), the user data if any.
openstack() {
	base=http://169.254.169.254/openstack/latest
	work=$(mktemp -d)
	with_retries openstack fetch "$base/meta_data.json" "$work/meta_data.json" || return 1
	jq -e 'type == "object"' "$work/meta_data.json" >/dev/null 2>&1 ||
		fail "openstack: meta_data.json is not a JSON object"
	mkdir -p "$config"
	echo openstack >"$config/provider"
	name=$(jq -r '.hostname // empty | tostring' "$work/meta_data.json")
	if [ -n "$name" ]; then
		printf '%s' "$name" >"$config/hostname"
	fi
	jq -r '.public_keys // {} | to_entries[] | .value' "$work/meta_data.json" >"$work/keys"
	write_keys "$work/keys" openstack
	if fetch "$base/user_data" "$work/user_data"; then
		apply_userdata "$work/user_data" openstack
	else
		say "openstack: no user data"
	fi
	rm -rf "$work"
}

# EC2's instance metadata service, IMDSv2 as instances now require: a session token from a
# PUT (busybox's wget cannot send one: nc does), then GETs that carry it. A service that
# answers the PUT with an error (no IMDSv2) is read without a token.
aws_token() {
	printf 'PUT /latest/api/token HTTP/1.0\r\nHost: 169.254.169.254\r\n%s\r\n\r\n' \
		"X-aws-ec2-metadata-token-ttl-seconds: 300" |
		busybox timeout 2 busybox nc 169.254.169.254 80 >"$work/token-response" 2>/dev/null &&
		[ -s "$work/token-response" ]
}

aws_get() {
	if [ -n "$token" ]; then
		busybox timeout 2 busybox wget -q --header "X-aws-ec2-metadata-token: $token" \
			-O "$2" "http://169.254.169.254/latest/$1" 2>/dev/null
	else
		fetch "http://169.254.169.254/latest/$1" "$2"
	fi
}

aws() {
	work=$(mktemp -d)
	with_retries aws aws_token || return 1
	token=
	if head -n 1 "$work/token-response" | grep -q '^HTTP/1\.[01] 200'; then
		token=$(awk 'body { print; next } /^\r?$/ { body = 1 }' "$work/token-response")
	fi
	if ! aws_get meta-data/instance-id "$work/instance-id"; then
		say "aws: 169.254.169.254 is no EC2 metadata service"
		return 1
	fi
	mkdir -p "$config"
	echo aws >"$config/provider"
	if aws_get meta-data/hostname "$work/hostname" && [ -s "$work/hostname" ]; then
		cp "$work/hostname" "$config/hostname"
	fi
	if aws_get meta-data/public-keys/0/openssh-key "$work/keys"; then
		write_keys "$work/keys" aws
	fi
	if aws_get user-data "$work/user_data"; then
		apply_userdata "$work/user_data" aws
	else
		say "aws: no user data"
	fi
	rm -rf "$work"
}

# Google Compute Engine's metadata server: asked with, and answering with, the header
# Metadata-Flavor: Google (which tells it from the other clouds' 169.254.169.254).
gcp_get() {
	busybox timeout 2 busybox wget -q -S --header "Metadata-Flavor: Google" -O "$2" \
		"http://169.254.169.254/computeMetadata/v1/$1" 2>"$work/headers" &&
		grep -qi '^ *Metadata-Flavor: *Google' "$work/headers"
}

gcp() {
	work=$(mktemp -d)
	with_retries gcp gcp_get instance/id "$work/id" || return 1
	mkdir -p "$config"
	echo gcp >"$config/provider"
	if gcp_get instance/hostname "$work/hostname" && [ -s "$work/hostname" ]; then
		cp "$work/hostname" "$config/hostname"
	fi
	# "user:key" lines, the instance's and then the project's (unless the instance blocks
	# them); every key is root's here.
	: >"$work/keys"
	for attributes in instance/attributes project/attributes; do
		if [ "$attributes" = project/attributes ] &&
			gcp_get instance/attributes/block-project-ssh-keys "$work/block" &&
			[ "$(cat "$work/block")" = true ]; then
			continue
		fi
		if gcp_get "$attributes/ssh-keys" "$work/more"; then
			sed -n 's/^[^:[:space:]]*://p' "$work/more" >>"$work/keys"
		fi
	done
	write_keys "$work/keys" gcp
	if gcp_get instance/attributes/user-data "$work/user_data"; then
		apply_userdata "$work/user_data" gcp
	else
		say "gcp: no user data"
	fi
	rm -rf "$work"
}

# DigitalOcean's metadata service: everything in one JSON document.
digitalocean() {
	work=$(mktemp -d)
	with_retries digitalocean fetch http://169.254.169.254/metadata/v1.json "$work/v1.json" ||
		return 1
	jq -e 'type == "object" and has("droplet_id")' "$work/v1.json" >/dev/null 2>&1 ||
		fail "digitalocean: metadata/v1.json is no droplet's metadata"
	mkdir -p "$config"
	echo digitalocean >"$config/provider"
	jq -r '.hostname // empty' "$work/v1.json" >"$work/hostname"
	[ ! -s "$work/hostname" ] || cp "$work/hostname" "$config/hostname"
	jq -r '.public_keys // [] | .[]' "$work/v1.json" >"$work/keys"
	write_keys "$work/keys" digitalocean
	if jq -e 'has("user_data")' "$work/v1.json" >/dev/null; then
		jq -j '.user_data' "$work/v1.json" >"$work/user_data"
		apply_userdata "$work/user_data" digitalocean
	else
		say "digitalocean: no user data"
	fi
	rm -rf "$work"
}

# Hetzner Cloud's metadata service: one path per item, the SSH keys a JSON array.
hetzner() {
	work=$(mktemp -d)
	base=http://169.254.169.254/hetzner/v1
	with_retries hetzner fetch "$base/metadata/instance-id" "$work/instance-id" || return 1
	mkdir -p "$config"
	echo hetzner >"$config/provider"
	if fetch "$base/metadata/hostname" "$work/hostname" && [ -s "$work/hostname" ]; then
		cp "$work/hostname" "$config/hostname"
	fi
	if fetch "$base/metadata/public-keys" "$work/public-keys"; then
		jq -r '.[]' "$work/public-keys" >"$work/keys" 2>/dev/null ||
			fail "hetzner: metadata/public-keys is not a JSON list"
		write_keys "$work/keys" hetzner
	fi
	if fetch "$base/userdata" "$work/user_data" && [ -s "$work/user_data" ]; then
		apply_userdata "$work/user_data" hetzner
	else
		say "hetzner: no user data"
	fi
	rm -rf "$work"
}

providers=${*:-cdrom}
found=
for provider in $providers; do
	case "$provider" in
	cdrom | openstack | aws | gcp | digitalocean | hetzner) ;;
	*) fail "provider $provider: use cdrom (a cidata volume), openstack, aws, gcp, digitalocean or hetzner" ;;
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
	name=$(head -n 1 "$config/hostname")
	# A cloud's FQDN can be longer than a host name may be (64): its first label then.
	[ "${#name}" -le 64 ] || name=${name%%.*}
	hostname "$name"
	say "hostname: $(hostname)"
fi
