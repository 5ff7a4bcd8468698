package client_test

import (
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hal0ai/hal0/internal/api"
	"github.com/hal0ai/hal0/internal/client"
	"github.com/hal0ai/hal0/internal/client/clienttest"
	"github.com/hal0ai/hal0/internal/config"
	"github.com/hal0ai/hal0/internal/slots"
)

// hal0-slotd is built by another part of the project; here the test stands
// in for it through the files the two daemons share: it writes the slot
// configuration and state.json, and reads request.json.

func slotEnv(t *testing.T) *clienttest.Env {
	t.Helper()
	e := clienttest.New(t, pullBin)
	dir := e.Cfg.Paths.SlotConfigDir()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{
		"primary": "[slot]\nport = 8081\nbackend = \"llama-server\"\n[model]\ndefault = \"" + clienttest.Model + "\"\n",
		"npu":     "[slot]\nport = 8088\nbackend = \"flm\"\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name+".toml"), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

func saveState(t *testing.T, e *clienttest.Env, st slots.Status) {
	t.Helper()
	if err := slots.SaveStatus(slots.StatePath(e.Cfg.Paths.StateDir, st.Name), &st); err != nil {
		t.Fatal(err)
	}
}

func TestSlotsListGetAndRequests(t *testing.T) {
	e := slotEnv(t)
	ctx := ctxT(t)
	c := e.Client(t)
	saveState(t, e, slots.Status{Name: "primary", State: slots.Ready, ModelID: "demo/a:Q4_K_M", UpdatedAt: 1750000000})

	all, err := c.Slots(ctx)
	if err != nil || len(all) != 2 || all[0].Name != "npu" || all[0].State != "offline" || all[1].State != "ready" || all[1].ModelID != "demo/a:Q4_K_M" {
		t.Fatalf("slots %+v, %v", all, err)
	}
	s, err := c.Slot(ctx, "primary")
	if err != nil || s.Backend != "llama-server" || s.DefaultModel != clienttest.Model || !s.Settled() || !s.Loaded() {
		t.Fatalf("slot %+v, %v", s, err)
	}

	// A swap is recorded for hal0-slotd, and the reply says so.
	acc, err := c.SwapSlot(ctx, "primary", "demo/b:q8_0")
	if err != nil {
		t.Fatal(err)
	}
	req, _ := slots.ReadRequest(slots.RequestPath(e.Cfg.Paths.StateDir, "primary"))
	if req == nil || req.ID != acc.RequestID || req.Kind != slots.EvSwap || req.Model != "demo/b:Q8_0" ||
		acc.Next != "unloading" || acc.State != "ready" || acc.Pending == nil || acc.Settled() {
		t.Fatalf("swap: reply %+v, request %+v", acc, req)
	}

	// Errors keep their code and map to the CLI's exit codes.
	for _, tc := range []struct {
		name string
		call func() error
		code string
		exit int
	}{
		{"unknown slot", func() error { _, err := c.Slot(ctx, "nope"); return err }, api.CodeSlotNotFound, api.ExitNotFound},
		{"a slash in the name", func() error { _, err := c.Slot(ctx, "a/b"); return err }, api.CodeSlotNotFound, api.ExitNotFound},
		{"load over another model", func() error { _, err := c.LoadSlot(ctx, "primary", "demo/c:Q4_K_M"); return err }, api.CodeSlotIllegal, api.ExitConflict},
		{"FLM tag on llama-server", func() error { _, err := c.SwapSlot(ctx, "primary", "qwen3:4b"); return err }, api.CodeSlotBackend, api.ExitUsage},
		{"bad ref", func() error { _, err := c.SwapSlot(ctx, "primary", "demo/../x"); return err }, api.CodeInvalidRef, api.ExitUsage},
		{"unload of an unknown slot", func() error { _, err := c.UnloadSlot(ctx, "nope"); return err }, api.CodeSlotNotFound, api.ExitNotFound},
	} {
		err := tc.call()
		var ae *api.Error
		if !errors.As(err, &ae) || ae.Code != tc.code || api.ExitCode(err) != tc.exit {
			t.Errorf("%s: %v (code %s, exit %d), want %s exit %d", tc.name, err, api.CodeOf(err), api.ExitCode(err), tc.code, tc.exit)
		}
	}

	// Over TCP, changes need the token.
	anon, _ := client.New(e.URL, config.Secret{})
	if _, err := anon.UnloadSlot(ctx, "primary"); api.CodeOf(err) != api.CodeUnauthorized {
		t.Errorf("unload over TCP without a token: %v", err)
	}
	tcp, _ := client.New(e.URL, config.NewSecret(clienttest.Token))
	acc, err = tcp.UnloadSlot(ctx, "primary")
	if err != nil || acc.Kind != "unload" || acc.Next != "unloading" || acc.Model != "" {
		t.Fatalf("unload over TCP: %+v %v", acc, err)
	}
	// An empty model loads the slot's default.
	saveState(t, e, slots.Status{Name: "primary", State: slots.Offline})
	if acc, err = c.LoadSlot(ctx, "primary", ""); err != nil || acc.Model != clienttest.Model || acc.Next != "pulling" {
		t.Fatalf("load of the default: %+v %v", acc, err)
	}
}

// TestSlotEvents follows a load to ready while the test, standing in for
// hal0-slotd, writes each state once the previous one was seen.
func TestSlotEvents(t *testing.T) {
	e := slotEnv(t)
	ctx := ctxT(t)
	c := e.Client(t)
	saveState(t, e, slots.Status{Name: "primary", State: slots.Offline})
	acc, err := c.LoadSlot(ctx, "primary", "")
	if err != nil {
		t.Fatal(err)
	}
	applied := map[string]any{"request_id": acc.RequestID}
	steps := []slots.Status{
		{Name: "primary", State: slots.Starting, ModelID: clienttest.Model, Target: clienttest.Model, Extra: applied},
		{Name: "primary", State: slots.Warming, ModelID: clienttest.Model, Target: clienttest.Model, Extra: applied},
		{Name: "primary", State: slots.Ready, ModelID: clienttest.Model, Extra: applied},
	}
	var seen []string
	err = c.SlotEvents(ctx, "primary", func(s *api.Slot) error {
		mark := ""
		if s.Pending != nil {
			mark = "+pending"
		}
		seen = append(seen, s.State+mark)
		if s.Settled() && s.State == "ready" {
			return client.ErrStopEvents
		}
		if len(seen) > len(steps) {
			t.Errorf("unexpected event %+v", s)
			return client.ErrStopEvents
		}
		saveState(t, e, steps[len(seen)-1])
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(seen, " "); got != "offline+pending starting warming ready" {
		t.Fatalf("events %s", got)
	}

	// fn's own error comes back as it is; a shutdown ends the stream.
	boom := errors.New("boom")
	if err := c.SlotEvents(ctx, "primary", func(*api.Slot) error { return boom }); err != boom {
		t.Errorf("fn error: %v", err)
	}
	done := make(chan error, 1)
	go func() {
		done <- c.SlotEvents(ctx, "npu", func(*api.Slot) error { e.Server.CloseStreams(); return nil })
	}()
	select {
	case err := <-done:
		if !errors.Is(err, client.ErrSlotStreamEnded) {
			t.Errorf("after CloseStreams: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("the stream did not end on CloseStreams")
	}
	// CloseStreams ends streams only: plain requests are still answered.
	if _, err := c.Slot(ctx, "primary"); err != nil {
		t.Fatal(err)
	}
	var ae *api.Error
	if err := c.SlotEvents(ctx, "nope", func(*api.Slot) error { return nil }); !errors.As(err, &ae) || ae.Status != http.StatusNotFound {
		t.Errorf("events of an unknown slot: %v", err)
	}
}
