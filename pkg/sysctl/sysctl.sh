#!/bin/busybox sh
# sysctl.sh [FILE | KEY=VALUE]...; see build.yml.
set -u
PATH=/usr/sbin:/usr/bin:/sbin:/bin

applied=0 failed=0 reported=0

say() { echo "sysctl: $*" >&2; }

# set WHERE KEY VALUE: one setting; WHERE names it in messages (FILE:LINE or "argument").
set_one() {
	local where=$1 key=$2 value=$3 optional= first path error
	case "$key" in -*) optional=yes key=${key#-} ;; esac
	# sysctl.d(5): dots separate the path unless the first separator is a slash, so an
	# interface name with a dot (eth0.100) can be written net/ipv4/conf/eth0.100/rp_filter.
	case "$key" in
	*/*) first=${key%%/*} ;;
	*) first=$key ;;
	esac
	case "$first" in
	*.*) path=$(echo "$key" | tr . /) ;;
	*) path=$key ;;
	esac
	case "/$path/" in
	*/../* | *//*) say "$where: $key: not a setting name"; failed=$((failed + 1)); return ;;
	esac
	if [ ! -e "/proc/sys/$path" ]; then
		error="this kernel has no such setting"
	elif error=$( { printf '%s\n' "$value" >"/proc/sys/$path"; } 2>&1 ); then
		applied=$((applied + 1))
		return
	else
		# (busybox's printf reports no write error: the kernel's refusal is all there is)
		error=${error##*: }
		error=${error:-the kernel refused the value}
	fi
	if [ -n "$optional" ]; then
		say "$where: $key: $error (optional: skipped)"
		reported=$((reported + 1))
	else
		say "$where: $key = $value: $error"
		failed=$((failed + 1))
	fi
}

# line WHERE TEXT: one line of a sysctl.d file or one argument.
line() {
	local where=$1 text=$2 key value
	text=$(echo "$text" | sed 's/^[[:space:]]*//; s/[[:space:]]*$//')
	case "$text" in '' | '#'* | ';'*) return ;; esac
	case "$text" in
	*=*) ;;
	*) say "$where: \"$text\" is not key = value"; failed=$((failed + 1)); return ;;
	esac
	key=$(echo "${text%%=*}" | sed 's/[[:space:]]*$//')
	value=$(echo "${text#*=}" | sed 's/^[[:space:]]*//')
	set_one "$where" "$key" "$value"
}

apply_file() {
	local file=$1 number=0 text
	if [ ! -r "$file" ]; then
		say "$file: cannot be read"
		failed=$((failed + 1))
		return
	fi
	while IFS= read -r text || [ -n "$text" ]; do
		number=$((number + 1))
		line "$file:$number" "$text"
	done <"$file"
}

for file in /etc/sysctl.d/*.conf; do
	[ -e "$file" ] && apply_file "$file"
done
for argument in "$@"; do
	case "$argument" in
	*=*) line argument "$argument" ;;
	*) apply_file "$argument" ;;
	esac
done

summary="$applied applied"
[ "$reported" -eq 0 ] || summary="$summary, $reported skipped (optional)"
[ "$failed" -eq 0 ] || summary="$summary, $failed failed"
say "$summary"
[ "$failed" -eq 0 ]
