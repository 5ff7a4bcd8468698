// Package packagetest holds the tests of hal0's Debian package as a whole:
// the .deb that packaging/build.sh (`make deb`) makes is checked with
// lintian, then installed for real with dpkg into a private systemd
// (internal/livesystemd), upgraded, updated with `hal0 update`, rolled back
// and purged, while the machine's own /usr, /etc and /var stay untouched.
//
// # The throwaway root
//
// The package's maintainer scripts must run against a real systemd (they
// enable and start units, run systemd-sysusers and systemd-tmpfiles), and
// the units they start must find the installed files at their real paths
// (/usr/lib/hal0/current/bin, /etc/hal0, /var/lib/hal0). The test therefore
// installs into the private systemd's own mount namespace, made writable
// by overlay mounts: /usr, /etc, /var/lib, /var/cache, /var/log and /mnt
// each get an overlayfs whose lower layer is the machine's directory and
// whose upper layer is a scratch directory that disappears with the
// namespace. dpkg, the maintainer scripts, the daemons and polkit all see
// one ordinary Debian system; every write lands in the upper layers.
//
// The other throwaway roots were weighed and rejected: `dpkg --root`
// installs into a tree no systemd runs from (maintainer scripts skip
// systemctl under DPKG_ROOT, units would need copying by hand), and a
// debootstrapped tree needs a mirror download per run and a systemd booted
// inside it, which internal/livesystemd does not do. The overlays keep the
// real dpkg database (so Depends: are checked against the machine's
// packages) at the cost of needing overlayfs, which every Debian kernel
// has.
//
// The tests need root, overlayfs, dpkg-deb, lintian and polkitd
// (packaging/test-deps.sh installs the last two); like every live test
// they skip without them unless HAL0_LIVE_REQUIRED=1.
package packagetest
