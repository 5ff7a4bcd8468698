// Package bench holds the download benchmark run by `make bench`
// (bench.sh) and a Go benchmark of SHA-256 throughput, the hash hal0
// verifies every LFS file with:
//
//	go test -run '^$' -bench SHA256 ./internal/bench/
package bench
