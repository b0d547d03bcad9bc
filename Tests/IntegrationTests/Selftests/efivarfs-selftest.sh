#!/bin/bash
# The cases of the kernel's efivarfs selftest (tools/testing/selftests/efivarfs:
# efivarfs.sh, create-read.c, open-unlink.c, v6.15+ expectations), rewritten for a mount
# path given on the command line.
# Usage: efivarfs-selftest.sh <mountpoint> <dir with create-read and open-unlink>
set -u
efivarfs_mount=$1
helpers=$2
test_guid=210be57c-9849-4fc7-a635-e6382d1aec27
passed=0
failed=0

check() {  # name, then the test function's exit status
	if [ "$2" -eq 0 ]; then echo "PASS $1"; passed=$((passed + 1)); else echo "FAIL $1"; failed=$((failed + 1)); fi
}

cleanup_file() { chattr -i "$1" 2>/dev/null; rm -f "$1"; }

# Removal at the last close happens when the daemon handles the kernel's RELEASE, which FUSE
# sends in the background after close(2) has returned (fs/fuse/file.c fuse_file_release);
# efivarfs removes the file before close returns. A check right after the last close waits
# for it, boundedly (README: differences from the kernel's efivarfs).
gone_after_close() { for _ in $(seq 100); do [ -e "$1" ] || return 0; sleep 0.02; done; return 1; }

test_create() {
	local attrs='\x07\x00\x00\x00'
	local file=$efivarfs_mount/$FUNCNAME-$test_guid
	printf "$attrs\x00" > "$file"
	[ -e "$file" ] || { echo "$file couldn't be created" >&2; return 1; }
	[ "$(stat -c %s "$file")" = 5 ] || { echo "$file has invalid size" >&2; cleanup_file "$file"; return 1; }
	cleanup_file "$file"
}

test_create_empty() {
	local file=$efivarfs_mount/$FUNCNAME-$test_guid
	: > "$file"
	if ! gone_after_close "$file"; then echo "$file can be created without writing" >&2; cleanup_file "$file"; return 1; fi
}

test_create_read() {
	local file=$efivarfs_mount/$FUNCNAME-$test_guid
	"$helpers/create-read" "$file" || return 1
	if ! gone_after_close "$file"; then echo "$file still exists after an uncommitted create" >&2; cleanup_file "$file"; return 1; fi
}

test_delete() {
	local attrs='\x07\x00\x00\x00'
	local file=$efivarfs_mount/$FUNCNAME-$test_guid
	printf "$attrs\x00" > "$file"
	[ -e "$file" ] || return 1
	cleanup_file "$file"
	[ ! -e "$file" ] || { echo "$file couldn't be deleted" >&2; return 1; }
}

test_zero_size_delete() {
	local attrs='\x07\x00\x00\x00'
	local file=$efivarfs_mount/$FUNCNAME-$test_guid
	printf "$attrs\x00" > "$file"
	[ -e "$file" ] || return 1
	chattr -i "$file"
	printf "$attrs" > "$file"
	if ! gone_after_close "$file"; then echo "$file should have been deleted" >&2; cleanup_file "$file"; return 1; fi
}

test_open_unlink() {
	local file=$efivarfs_mount/$FUNCNAME-$test_guid
	"$helpers/open-unlink" "$file"
}

test_valid_filenames() {
	local attrs='\x07\x00\x00\x00'
	local ret=0
	for name in abc dump-type0-11-1-1362436005 1234 -; do
		local file=$efivarfs_mount/$name-$test_guid
		printf "$attrs\x00" > "$file"
		if [ ! -e "$file" ]; then echo "$file could not be created" >&2; ret=1; else cleanup_file "$file"; fi
	done
	return $ret
}

test_invalid_filenames() {
	local attrs='\x07\x00\x00\x00'
	local ret=0
	for name in -1234-1234-1234-123456789abc foo foo-bar -foo- foo-barbazba-foob-foob-foob-foobarbazfoo \
		foo------------------------------------- -12345678-1234-1234-1234-123456789abc \
		a-12345678=1234-1234-1234-123456789abc a-12345678-1234=1234-1234-123456789abc \
		a-12345678-1234-1234=1234-123456789abc a-12345678-1234-1234-1234=123456789abc \
		1112345678-1234-1234-1234-123456789abc; do
		local file=$efivarfs_mount/$name
		printf "$attrs\x00" 2>/dev/null > "$file"
		if [ -e "$file" ]; then echo "Creating $file should have failed" >&2; cleanup_file "$file"; ret=1; fi
	done
	return $ret
}

test_no_set_size() {
	local attrs='\x07\x00\x00\x00'
	local file=$efivarfs_mount/$FUNCNAME-$test_guid
	local ret=0
	printf "$attrs\x00" > "$file"
	[ -e "$file" ] && [ -s "$file" ] || { echo "$file has no content" >&2; return 1; }
	chattr -i "$file"
	: > "$file" || { echo "$file: truncation failed" >&2; ret=1; }
	if [ ! -e "$file" ] || [ ! -s "$file" ]; then echo "$file lost its size after truncation" >&2; ret=1; fi
	cleanup_file "$file"
	return $ret
}

# The "multiple" tests coordinate three background jobs through named pipes.
setup_pipes() {
	pipes=$(mktemp -d)
	for i in 1 2 3 4 5 6; do mkfifo "$pipes/p$i"; done
}
waitpipe() { read -r _ < "$1"; }
# Background jobs start in any order: wait until the first one has opened (created) the file.
wait_exists() { for _ in $(seq 100); do [ -e "$1" ] && return 0; sleep 0.02; done; return 1; }
signal() { echo go > "$1"; }

test_multiple_zero_size() {
	setup_pipes
	local var=$efivarfs_mount/test_multiple-$test_guid
	local ret=0
	{ waitpipe "$pipes/p1"; echo 1; signal "$pipes/p2"; waitpipe "$pipes/p3"; } > "$var" 2>/dev/null &
	local j1=$!
	wait_exists "$var"
	{ waitpipe "$pipes/p4"; } < "$var" &
	local j2=$!
	{ waitpipe "$pipes/p5"; } < "$var" &
	local j3=$!
	sleep 0.2
	[ -e "$var" ] || { echo "var missing while open" >&2; ret=1; }
	signal "$pipes/p1"; waitpipe "$pipes/p2"; signal "$pipes/p3"; wait $j1
	[ -e "$var" ] || { echo "var missing after job1" >&2; ret=1; }
	signal "$pipes/p4"; wait $j2
	[ -e "$var" ] || { echo "var missing after job2" >&2; ret=1; }
	signal "$pipes/p5"; wait $j3
	if ! gone_after_close "$var"; then echo "var exists after the last close" >&2; cleanup_file "$var"; ret=1; fi
	rm -rf "$pipes"
	return $ret
}

test_multiple_create() {
	setup_pipes
	local var=$efivarfs_mount/test_multiple-$test_guid
	local ret=0
	{ waitpipe "$pipes/p1"; printf '\x07\x00\x00\x00\x54'; } > "$var" &
	local j1=$!
	wait_exists "$var"
	{ waitpipe "$pipes/p2"; } < "$var" &
	local j2=$!
	{ waitpipe "$pipes/p3"; } < "$var" &
	local j3=$!
	sleep 0.2
	[ -e "$var" ] && [ ! -s "$var" ] || { echo "var should exist with size 0" >&2; ret=1; }
	signal "$pipes/p2"; wait $j2
	signal "$pipes/p3"; wait $j3
	[ -e "$var" ] && [ ! -s "$var" ] || { echo "var should still exist with size 0" >&2; ret=1; }
	signal "$pipes/p1"; wait $j1
	[ -e "$var" ] && [ -s "$var" ] || { echo "var should exist with content" >&2; ret=1; }
	cleanup_file "$var"
	rm -rf "$pipes"
	return $ret
}

test_multiple_delete_on_write() {
	setup_pipes
	local var=$efivarfs_mount/test_multiple-$test_guid
	local ret=0
	printf '\x07\x00\x00\x00\x54' > "$var"
	chattr -i "$var"
	{ waitpipe "$pipes/p1"; printf '\x07\x00\x00\x00'; } > "$var" &
	local j1=$!
	{ waitpipe "$pipes/p2"; } < "$var" &
	local j2=$!
	{ waitpipe "$pipes/p3"; } < "$var" &
	local j3=$!
	sleep 0.2
	[ -e "$var" ] && [ -s "$var" ] || { echo "var should exist with content" >&2; ret=1; }
	signal "$pipes/p1"; wait $j1
	[ -e "$var" ] && [ ! -s "$var" ] || { echo "var should exist with size 0 after the deleting write" >&2; ret=1; }
	signal "$pipes/p2"; wait $j2
	[ -e "$var" ] || { echo "var should exist while job3 holds it" >&2; ret=1; }
	signal "$pipes/p3"; wait $j3
	if ! gone_after_close "$var"; then echo "var should be gone after the last close" >&2; cleanup_file "$var"; ret=1; fi
	rm -rf "$pipes"
	return $ret
}

for t in test_create test_create_empty test_create_read test_delete test_zero_size_delete test_open_unlink \
	test_valid_filenames test_invalid_filenames test_no_set_size test_multiple_zero_size test_multiple_create \
	test_multiple_delete_on_write; do
	( $t ); check "$t" $?
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
