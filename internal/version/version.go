// Package version reports the build's version, set at link time by the
// Makefile (-X …/version.Version=…).
package version

// Version is the release version, "dev" for untagged builds.
var Version = "dev"

// Commit is the source commit the binary was built from.
var Commit = ""

// String returns "dev" or "1.2.3 (abcdef012345)".
func String() string {
	if Commit == "" {
		return Version
	}
	c := Commit
	if len(c) > 12 {
		c = c[:12]
	}
	return Version + " (" + c + ")"
}
