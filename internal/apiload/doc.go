// Command apiload is a small HTTP load generator for hal0-apid: N
// concurrent clients, each on one keep-alive connection, request one URL
// over TCP or a unix socket for a duration or a request count, and it
// prints throughput, latency percentiles and errors.
//
//	go run ./internal/apiload -unix /run/hal0/api.sock -c 16 -rate 2000 -d 10s \
//	    http://hal0/api/models/demo%2Fm:Q4_K_M/pull/status
//	go run ./internal/apiload -c 8 -d 10s http://127.0.0.1:8080/api/health
//
// Two modes:
//
//   - closed loop (default, -rate 0): every client sends its next request
//     as soon as the previous one is answered. This finds the highest
//     throughput; latency is per request.
//   - open loop (-rate R): requests are due at a fixed total rate of R per
//     second, each client taking every N-th slot, whatever the server does.
//     Latency is measured from the moment a request was due, not from when
//     its client got round to sending it, so a server that stalls is
//     charged for the requests that queued up behind the stall (no
//     "coordinated omission"). "late" counts requests sent more than 1 ms
//     after they were due, and the service time (from send to answer) is
//     reported next to the latency: when the two differ much, requests
//     waited for their client, or the machine woke the generator late.
//
// With -warmup D, requests in the first D are sent but not counted, so
// connection set-up and a cold cache do not skew the figures. A request is
// an error when it fails at the transport level or answers a status other
// than -expect (200). Output is one human summary, or one JSON object with
// -json. The exit status is 0 when every request succeeded, 1 when any
// failed or none completed, 2 for bad usage.
//
// Requests are identical and carry no body; -H adds headers (for example
// "Authorization: Bearer …" for POST over TCP). Go's default
// "Accept-Encoding: gzip" is sent unless -gzip=false, as the hal0 CLI
// sends it.
package main
