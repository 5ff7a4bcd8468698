#!/usr/bin/env bash
# Builds hal0's Debian package and its release tarball with dpkg-deb alone
# (no debhelper, no nfpm: nothing to fetch), into $OUT (default dist/):
#
#   hal0_<version>_<arch>.deb            the package (`make deb`)
#   hal0_<version>_linux_<arch>.tar.gz   hal0-<version>/bin/*, for `hal0 update --from`
#   <each of them>.sha256                sha256sum lines, which `hal0 update` reads
#
# Environment: VERSION (default: derived from git, see below), ARCH (a
# Debian architecture, default the build machine's), OUT, GO, MAINTAINER,
# SOURCE_DATE_EPOCH (default: the commit's time, for reproducible dates),
# XZ_LEVEL (the .deb's xz level, default dpkg-deb's 6: 16 s for 10 MB;
# the tests use 1, 2 s for 11.5 MB, the same format).
#
# The layout it installs:
#   /usr/lib/hal0/<version>/bin/{hal0,hal0-apid,hal0-pull,hal0-slotd}
#   /usr/lib/hal0/current -> <version>    (what the units run)
#   /usr/bin/hal0 -> ../lib/hal0/current/bin/hal0
#   /lib/systemd/system/hal0*             (units/)
#   /usr/lib/sysusers.d/hal0.conf, /usr/lib/tmpfiles.d/hal0.conf
#   /usr/share/polkit-1/rules.d/60-hal0.rules
#   /etc/hal0/hal0.toml                   (conffile)
set -euo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
OUT=${OUT:-dist}
ARCH=${ARCH:-$(dpkg --print-architecture)}
MAINTAINER=${MAINTAINER:-hal0 maintainers <maintainers@hal0.invalid>}
COMMIT=$(git rev-parse HEAD 2>/dev/null || echo unknown)
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
export SOURCE_DATE_EPOCH

# A Debian version must start with a digit and sort upwards release after
# release: a tag v1.2.3 gives 1.2.3, commits after it 1.2.3+git<n>.<sha>,
# and an untagged tree 0.0.0+git<commits>.<sha>. A dirty tree is marked so
# that it never passes for the commit.
derive_version() {
	local d count sha
	if d=$(git describe --tags --match 'v[0-9]*' 2>/dev/null); then
		d=${d#v}
		if [[ $d =~ ^(.*)-([0-9]+)-g([0-9a-f]+)$ ]]; then
			d="${BASH_REMATCH[1]}+git${BASH_REMATCH[2]}.${BASH_REMATCH[3]}"
		fi
	else
		count=$(git rev-list --count HEAD 2>/dev/null || echo 0)
		sha=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
		d="0.0.0+git${count}.${sha}"
	fi
	if [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
		d="${d}.dirty"
	fi
	echo "$d"
}
VERSION=${VERSION:-$(derive_version)}
# The version names a directory and a Debian version: the characters both
# allow, and never the names of the links next to it.
if ! [[ $VERSION =~ ^[0-9][0-9A-Za-z.+~]*$ ]] || [ ${#VERSION} -gt 64 ]; then
	echo "build.sh: VERSION=$VERSION: want a digit, then letters, digits and . + ~ (64 at most)" >&2
	exit 2
fi
case "$ARCH" in
amd64 | arm64) GOARCH=$ARCH ;;
*)
	echo "build.sh: ARCH=$ARCH: hal0 is built for amd64 and arm64" >&2
	exit 2
	;;
esac

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
stage=$work/hal0
vdir=$stage/usr/lib/hal0/$VERSION

# Static-pie, stripped binaries: no libc dependency, and loaded at a
# random address like every other hardened executable in Debian.
mkdir -p "$vdir/bin"
CGO_ENABLED=0 GOOS=linux GOARCH=$GOARCH "$GO" build -trimpath -buildmode=pie \
	-ldflags "-s -w -X github.com/hal0ai/hal0/internal/version.Version=$VERSION -X github.com/hal0ai/hal0/internal/version.Commit=$COMMIT" \
	-o "$vdir/bin/" ./hal0 ./hal0-apid ./hal0-pull ./hal0-slotd

ln -s "$VERSION" "$stage/usr/lib/hal0/current"
mkdir -p "$stage/usr/bin"
ln -s ../lib/hal0/current/bin/hal0 "$stage/usr/bin/hal0"

# Debian 12 keeps units in /lib/systemd/system (merged /usr makes it the
# same directory, but dpkg and lintian go by the path).
install -d "$stage/lib/systemd/system"
install -m 0644 units/hal0* "$stage/lib/systemd/system/"
install -D -m 0644 packaging/sysusers.d/hal0.conf "$stage/usr/lib/sysusers.d/hal0.conf"
install -D -m 0644 packaging/tmpfiles.d/hal0.conf "$stage/usr/lib/tmpfiles.d/hal0.conf"
install -D -m 0644 packaging/polkit/60-hal0.rules "$stage/usr/share/polkit-1/rules.d/60-hal0.rules"
install -D -m 0644 packaging/hal0.toml "$stage/etc/hal0/hal0.toml"

doc=$stage/usr/share/doc/hal0
install -D -m 0644 packaging/debian/copyright "$doc/copyright"
install -D -m 0644 packaging/debian/lintian-overrides "$stage/usr/share/lintian/overrides/hal0"
date=$(date -u -R -d "@$SOURCE_DATE_EPOCH")
printf 'hal0 (%s) unstable; urgency=medium\n\n  * Release %s.\n  * Built from commit %s.\n\n -- %s  %s\n' \
	"$VERSION" "$VERSION" "$COMMIT" "$MAINTAINER" "$date" | gzip -9n >"$doc/changelog.gz"
install -d "$stage/usr/share/man/man1"
gzip -9n <packaging/man/hal0.1 >"$stage/usr/share/man/man1/hal0.1.gz"
chmod 0644 "$doc/changelog.gz" "$stage/usr/share/man/man1/hal0.1.gz"

install -d "$stage/DEBIAN"
install -m 0755 packaging/debian/postinst packaging/debian/prerm packaging/debian/postrm "$stage/DEBIAN/"
echo /etc/hal0/hal0.toml >"$stage/DEBIAN/conffiles"
size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
sed -e "s|@VERSION@|$VERSION|" -e "s|@ARCH@|$ARCH|" -e "s|@MAINTAINER@|$MAINTAINER|" -e "s|@INSTALLED_SIZE@|$size|" \
	packaging/debian/control >"$stage/DEBIAN/control"
(cd "$stage" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z | xargs -0 md5sum) >"$stage/DEBIAN/md5sums"
chmod 0644 "$stage/DEBIAN/control" "$stage/DEBIAN/conffiles" "$stage/DEBIAN/md5sums"
# umask-independent directory modes.
find "$stage" -type d -exec chmod 0755 {} +

mkdir -p "$OUT"
deb=hal0_${VERSION}_${ARCH}.deb
dpkg-deb --root-owner-group -Zxz -z"${XZ_LEVEL:-6}" --build "$stage" "$OUT/$deb" >/dev/null

# The release tarball: the version tree alone, as `hal0 update` unpacks it.
tgz=hal0_${VERSION}_linux_${ARCH}.tar.gz
mkdir -p "$work/tar/hal0-$VERSION"
cp -a "$vdir/bin" "$work/tar/hal0-$VERSION/"
tar -C "$work/tar" --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$SOURCE_DATE_EPOCH" \
	-cf - "hal0-$VERSION" | gzip -n >"$OUT/$tgz"

(cd "$OUT" && sha256sum "$deb" >"$deb.sha256" && sha256sum "$tgz" >"$tgz.sha256")
echo "$OUT/$deb"
echo "$OUT/$tgz"
