module github.com/hal0ai/hal0

go 1.26.8

require (
	github.com/BurntSushi/toml v1.6.0
	github.com/coreos/go-systemd/v22 v22.7.0
	github.com/godbus/dbus/v5 v5.2.4
	golang.org/x/sys v0.49.0
	golang.org/x/term v0.47.0
)

require github.com/klauspost/compress v1.20.3 // indirect
