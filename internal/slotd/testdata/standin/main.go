// Command standin stands in for llama-server in hal0-slotd's live tests:
// the real inference server cannot run on the test machines (no GPU, no
// model worth loading), so this speaks the part of its protocol hal0-slotd
// relies on. It listens on 127.0.0.1:--port and answers GET /health with
// 503 {"error":{"message":"Loading model"}} while it "loads", then 200
// {"status":"ok"}. GET /props reports what it was started with, so a test
// can tell which model a slot serves.
//
// Loading ends when the --gate file exists (checked on each request, so a
// test decides when warming is over), or at once without --gate. With
// --crash it exits 1 right after answering its first health check, i.e.
// while hal0-slotd has the slot warming. With --never it never gets
// healthy. SIGTERM ends it with status 0, as llama-server does.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
)

func main() {
	model := flag.String("model", "", "model file")
	port := flag.Int("port", 0, "port on 127.0.0.1")
	ctxSize := flag.Int("ctx", 0, "context size")
	gate := flag.String("gate", "", "loading ends once this file exists")
	crash := flag.Bool("crash", false, "exit 1 after the first health check")
	never := flag.Bool("never", false, "never finish loading")
	exit := flag.Bool("exit", false, "exit 0 at once, before listening (a backend that quits cleanly on start)")
	flag.Parse()
	if *exit {
		fmt.Fprintln(os.Stderr, "standin: exiting at once, as asked (--exit)")
		return
	}

	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(*port)))
	if err != nil {
		fmt.Fprintln(os.Stderr, "standin:", err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "standin: serving %s (ctx %d) on %s\n", *model, *ctxSize, l.Addr())
	loaded := func() bool {
		if *never || *crash {
			return false
		}
		if *gate == "" {
			return true
		}
		_, err := os.Stat(*gate)
		return err == nil
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if !loaded() {
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte(`{"error":{"code":503,"message":"Loading model","type":"unavailable_error"}}`))
			if *crash {
				fmt.Fprintln(os.Stderr, "standin: crashing while loading, as asked (--crash)")
				os.Exit(1)
			}
			return
		}
		w.Write([]byte(`{"status":"ok"}`))
	})
	mux.HandleFunc("GET /props", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]any{"model_path": *model, "n_ctx": *ctxSize, "pid": os.Getpid()})
	})
	srv := &http.Server{Handler: mux}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	if err := srv.Serve(l); err != nil && err != http.ErrServerClosed {
		fmt.Fprintln(os.Stderr, "standin:", err)
		os.Exit(1)
	}
	fmt.Fprintln(os.Stderr, "standin: stopped")
}
