# busybox sh: redirections.
# Run as `/bin/sh /test.sh` natively (chroot) and in the sandbox; outputs must match.
set -u
mkdir -p /tmp/sh && cd /tmp/sh

echo '== redirections'
echo first > out; echo second >> out; cat < out
{ echo to-stderr >&2; echo to-stdout; } 2> err.txt > std.txt
echo "err: $(cat err.txt) std: $(cat std.txt)"
exec 3> fd3.txt; echo via-fd3 >&3; exec 3>&-
exec 4< out; read first <&4; read second <&4; exec 4<&-
echo "fd3: $(cat fd3.txt) fd4: $first,$second"
ls /no/such/file 2>&1 >/dev/null | sed 's/^/captured: /'
echo hidden 2>/dev/null >/dev/null
: > empty; echo "empty has $(wc -c < empty) bytes"
echo noclobber-test > nc; set -C; (echo again > nc) 2>/dev/null || echo "noclobber refused"; set +C
