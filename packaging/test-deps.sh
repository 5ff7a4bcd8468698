#!/usr/bin/env bash
# Installs the Debian packages the package and live tests need and a
# fresh Debian 12 machine lacks: lintian (internal/packagetest checks the
# .deb with it) and polkitd (the package depends on it; the live tests ask
# it about the packaged rule). Installs only what is missing; needs root.
set -euo pipefail

need=()
command -v lintian >/dev/null || need+=(lintian)
command -v pkcheck >/dev/null || need+=(polkitd)
if [ ${#need[@]} -gt 0 ]; then
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
