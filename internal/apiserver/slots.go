package apiserver

// The slot routes are hal0-apid's half of a contract with hal0-slotd that
// consists of files only, so that either daemon can restart (or crash) at
// any point without the other noticing:
//
//   - /etc/hal0/slots/<name>.toml, the configuration, read here;
//   - /var/lib/hal0/slots/<name>/state.json, written by hal0-slotd, read
//     here;
//   - /var/lib/hal0/slots/<name>/request.json, written here before the
//     202 goes out and applied by hal0-slotd, which watches it with
//     inotify: writing the file is the whole notification.
//
// The state machine runs in hal0-slotd. Requests are checked here with a
// dry run of the same pure reducer, so that an illegal one is refused at
// once with 409 instead of being written and ignored.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/hal0ai/hal0/internal/api"
	"github.com/hal0ai/hal0/internal/ref"
	"github.com/hal0ai/hal0/internal/slots"
	"github.com/hal0ai/hal0/internal/unitname"
)

// SlotTemplate is the systemd template each slot runs under.
const SlotTemplate = "hal0-slot@.service"

// slotMu makes the check and the write of a request one step, so that the
// request left in request.json is the one accepted last: "the newest
// request wins" then means what the person who pressed Swap twice expects.
var slotMu sync.Mutex

// registerSlots adds the /api/slots routes. Method patterns are safe here:
// a method that no slot route takes falls through to the catch-all /api/
// route, which answers with the error envelope.
func (s *Server) registerSlots(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/slots", s.listSlots)
	mux.HandleFunc("GET /api/slots/{name}", s.getSlot)
	mux.HandleFunc("GET /api/slots/{name}/events", s.slotEvents)
	mux.HandleFunc("GET /api/slots/{name}/logs", s.slotLogs)
	mux.HandleFunc("POST /api/slots/{name}/swap", s.slotAction(slots.EvSwap))
	mux.HandleFunc("POST /api/slots/{name}/load", s.slotAction(slots.EvLoad))
	mux.HandleFunc("POST /api/slots/{name}/unload", s.slotAction(slots.EvUnload))
}

// slotConfigs reads every slot file. The set is read on each request:
// slots are few, and an edited file then needs no restart of hal0-apid.
func (s *Server) slotConfigs() ([]*slots.Config, error) {
	cs, err := slots.LoadConfigs(s.Cfg.Paths.SlotConfigDir())
	var npu *slots.NPUConflictError
	if errors.As(err, &npu) {
		return nil, &api.Error{Code: api.CodeSlotNPU, Status: http.StatusConflict, Err: err,
			Message: fmt.Sprintf("slot configuration: %v: the NPU has one hardware context, so set enabled = false in one of them", err)}
	}
	if err != nil {
		return nil, api.Errorf(api.CodeSlotConfig, http.StatusBadRequest, "slot configuration: %v", err)
	}
	return cs, nil
}

func (s *Server) slotConfig(name string) (*slots.Config, error) {
	cs, err := s.slotConfigs()
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(cs))
	for _, c := range cs {
		if c.Slot.Name == name {
			return c, nil
		}
		names = append(names, c.Slot.Name)
	}
	have := "none is configured"
	if len(names) > 0 {
		have = "configured: " + strings.Join(names, ", ")
	}
	return nil, api.Errorf(api.CodeSlotNotFound, http.StatusNotFound, "no slot %q (%s; slots are files in %s)", name, have, s.Cfg.Paths.SlotConfigDir())
}

func (s *Server) statePath(name string) string {
	return slots.StatePath(s.Cfg.Paths.StateDir, name)
}

func (s *Server) requestPath(name string) string {
	return slots.RequestPath(s.Cfg.Paths.StateDir, name)
}

// appliedRequest is the id of the last request hal0-slotd took up
// (applied or refused), which it records in the slot's status.
func appliedRequest(st *slots.Status) string {
	id, _ := st.Extra["request_id"].(string)
	return id
}

// slotView merges a slot's configuration with its state, its pending
// request and, while it pulls, the pull's progress.
func (s *Server) slotView(ctx context.Context, c *slots.Config) *api.Slot {
	name := c.Slot.Name
	v := &api.Slot{
		Name: name, Port: c.Slot.Port, Backend: c.Slot.Backend, DefaultModel: c.Model.Default,
		Enabled: c.IsEnabled(), Role: c.Slot.Role, Unit: unitname.Instance(SlotTemplate, name),
	}
	st, err := slots.LoadStatus(s.statePath(name), name)
	if err != nil {
		// Shown rather than failing the whole list: one broken file must
		// not hide the other slots. Not logged: event streams build this
		// view several times a second.
		v.State, v.StateError = "unknown", err.Error()
	} else {
		v.State, v.ModelID, v.Target, v.Message = string(st.State), st.ModelID, st.Target, st.Message
		v.UpdatedAt, v.Extra = st.UpdatedAt, st.Extra
	}
	// A malformed request.json is hal0-slotd's to report (it reads it);
	// the next request replaces it.
	req, _ := slots.ReadRequest(s.requestPath(name))
	if req != nil && (st == nil || appliedRequest(st) != req.ID) {
		v.Pending = &api.SlotRequest{ID: req.ID, Kind: string(req.Kind), Model: req.Model, CreatedAt: req.CreatedAt}
	}
	if st != nil {
		if o, ok := st.Extra["request"]; ok {
			var out api.SlotRequestOutcome
			if fromExtra(o, &out) && out.ID != "" {
				v.LastRequest = &out
			}
		}
		if st.State == slots.Pulling && st.Target != "" {
			v.Pull = s.slotPull(ctx, st.Target)
			if p, ok := st.Extra["pull"]; ok && v.Pull == nil {
				var sp api.SlotPull
				if fromExtra(p, &sp) && sp.JobID != "" {
					v.Pull = &sp
				}
			}
		}
	}
	return v
}

// fromExtra decodes a value of state.json's extra, which arrives as
// generic JSON, into its wire type.
func fromExtra(v any, out any) bool {
	b, err := json.Marshal(v)
	return err == nil && json.Unmarshal(b, out) == nil
}

// slotPull reports the running pull of model from its job record, which
// the worker updates more often than hal0-slotd copies it into extra.pull.
// A finished job is left out: it may be an earlier attempt, and once the
// pull of this one ends hal0-slotd moves the slot on and says how in its
// message.
func (s *Server) slotPull(ctx context.Context, model string) *api.SlotPull {
	j, err := s.Jobs.Current(model)
	if err != nil || j.State.Final() {
		return nil
	}
	ps := s.merge(ctx, j)
	if ps.Final() {
		return nil
	}
	return &api.SlotPull{JobID: ps.JobID, State: ps.State, BytesTotal: ps.BytesTotal, BytesDone: ps.BytesDone,
		RateBPS: ps.RateBPS, ETAS: ps.ETAS, Error: ps.Error}
}

func (s *Server) listSlots(w http.ResponseWriter, r *http.Request) {
	cs, err := s.slotConfigs()
	if err != nil {
		writeErr(w, err)
		return
	}
	out := make([]*api.Slot, 0, len(cs))
	for _, c := range cs {
		out = append(out, s.slotView(r.Context(), c))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) getSlot(w http.ResponseWriter, r *http.Request) {
	c, err := s.slotConfig(r.PathValue("name"))
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, s.slotView(r.Context(), c))
}

// slotAction handles load, swap and unload: check everything that can be
// checked here, then record the request for hal0-slotd and answer 202.
func (s *Server) slotAction(kind slots.EventKind) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var body api.SlotActionRequest
		if err := decodeBody(r, &body); err != nil {
			writeErr(w, err)
			return
		}
		c, err := s.slotConfig(r.PathValue("name"))
		if err != nil {
			writeErr(w, err)
			return
		}
		model, installed, err := s.slotModel(c, kind, body)
		if err != nil {
			writeErr(w, err)
			return
		}
		name := c.Slot.Name
		if c.Slot.Backend == "flm" && !installed && model != "" {
			if err := s.flmSlotModel(r.Context(), name, model); err != nil {
				writeErr(w, err)
				return
			}
		}

		slotMu.Lock()
		defer slotMu.Unlock()
		st, err := slots.LoadStatus(s.statePath(name), name)
		if err != nil {
			writeErr(w, api.Errorf(api.CodeSlotConfig, http.StatusBadRequest, "%v", err))
			return
		}
		next, _, err := slots.Reduce(*st, slots.Event{Kind: kind, Model: model, Installed: installed}, s.now())
		var ie *slots.IllegalTransitionError
		if errors.As(err, &ie) {
			writeErr(w, &api.Error{Code: api.CodeSlotIllegal, Status: http.StatusConflict, Message: refusal(st, kind, model), Err: err})
			return
		}
		if err != nil {
			writeErr(w, api.Errorf(api.CodeInternal, http.StatusInternalServerError, "slot %s: %v", name, err))
			return
		}
		// A request that changes nothing is recorded too: it replaces a
		// different one still waiting, which the person no longer wants.
		req := &slots.Request{ID: slots.NewRequestID(), Kind: kind, Model: model, CreatedAt: s.now().UTC()}
		if err := slots.WriteRequest(s.requestPath(name), req); err != nil {
			s.logf("slot %s: record %s request: %v", name, kind, err)
			writeErr(w, api.Errorf(api.CodeInternal, http.StatusInternalServerError, "could not record the %s request for hal0-slotd: %v", kind, err))
			return
		}
		s.logf("slot %s: %s %s requested (request %s)", name, kind, model, req.ID)
		writeJSON(w, http.StatusAccepted, api.SlotAccepted{
			Slot: *s.slotView(r.Context(), c), RequestID: req.ID, Kind: string(kind), Model: model, Next: string(next.State),
		})
	}
}

// slotModel works out the canonical model a load or swap asks for and
// whether it is installed. Unload takes no model.
func (s *Server) slotModel(c *slots.Config, kind slots.EventKind, body api.SlotActionRequest) (string, bool, error) {
	name := c.Slot.Name
	model := body.Model
	if body.ModelID != "" {
		if model != "" && model != body.ModelID {
			return "", false, api.Errorf(api.CodeBadRequest, http.StatusBadRequest, "model %q and model_id %q disagree: send one of them", model, body.ModelID)
		}
		model = body.ModelID
	}
	if kind == slots.EvUnload {
		if model != "" {
			return "", false, api.Errorf(api.CodeBadRequest, http.StatusBadRequest, "unload takes no model: it stops whatever slot %s serves", name)
		}
		return "", false, nil
	}
	if !c.IsEnabled() {
		return "", false, api.Errorf(api.CodeSlotDisabled, http.StatusConflict, "slot %s is disabled (slot.enabled = false in %s): enable it before loading a model", name, s.slotFile(name))
	}
	var rf ref.Ref
	var err error
	switch {
	case model != "":
		if rf, err = ref.Parse(model); err != nil {
			return "", false, &api.Error{Code: api.CodeInvalidRef, Status: http.StatusBadRequest, Message: err.Error(), Err: err}
		}
	case kind == slots.EvSwap:
		return "", false, api.Errorf(api.CodeBadRequest, http.StatusBadRequest, `swap needs the model to swap to: {"model": "org/name:QUANT"}`)
	case c.Model.Default == "":
		return "", false, api.Errorf(api.CodeSlotConfig, http.StatusBadRequest, "slot %s has no model.default in %s: name the model to load", name, s.slotFile(name))
	default:
		if rf, err = ref.Parse(c.Model.Default); err != nil {
			return "", false, api.Errorf(api.CodeSlotConfig, http.StatusBadRequest, "model.default of slot %s in %s: %v", name, s.slotFile(name), err)
		}
	}
	if err := backendServes(name, c.Slot.Backend, rf); err != nil {
		return "", false, err
	}
	reg, err := s.Registry.Load()
	if err != nil {
		return "", false, api.Errorf(api.CodeInternal, http.StatusInternalServerError, "%v", err)
	}
	_, installed := reg.Get(rf.String())
	if rf.Kind == ref.KindLocal && !installed {
		// A registry id names a model staged by hand: there is nothing to
		// pull it from.
		return "", false, api.Errorf(api.CodeModelMissing, http.StatusNotFound, "model %s is not in the registry (see GET /api/models); name a Hugging Face ref such as org/name:Q4_K_M to have it pulled", rf)
	}
	return rf.String(), installed, nil
}

func (s *Server) slotFile(name string) string {
	return filepath.Join(s.Cfg.Paths.SlotConfigDir(), name+".toml")
}

// backendServes refuses a model the slot's backend cannot run, naming
// what each backend serves so the fix is obvious. Registry ids pass: a
// pre-staged model may be either kind.
func backendServes(slot, backend string, rf ref.Ref) error {
	switch {
	case backend == "llama-server" && rf.Kind == ref.KindFLM:
		return api.Errorf(api.CodeSlotBackend, http.StatusBadRequest,
			"%s is an FLM tag, which only an flm slot (the NPU) serves; slot %s runs llama-server, which serves GGUF models named by Hugging Face refs (org/name:Q4_K_M) or registry ids", rf, slot)
	case backend == "flm" && rf.Kind == ref.KindHF:
		return api.Errorf(api.CodeSlotBackend, http.StatusBadRequest,
			"%s is a Hugging Face ref, which llama-server slots serve; slot %s runs flm (the NPU), which serves FLM tags such as qwen3:4b", rf, slot)
	}
	return nil
}

// refusal explains a 409: the current state, and what to do instead.
func refusal(st *slots.Status, kind slots.EventKind, model string) string {
	cur := fmt.Sprintf("slot %s is %s", st.Name, st.State)
	switch st.State {
	case slots.Ready, slots.Idle, slots.Serving:
		return fmt.Sprintf("%s with %s: load does not replace a running model; swap to %s instead, or unload first", cur, st.ModelID, model)
	case slots.Unloading:
		if st.Target != "" {
			cur += " to swap to " + st.Target
		}
		return fmt.Sprintf("%s: wait until that finishes before asking to %s %s", cur, kind, model)
	}
	busy := st.Target
	if busy == "" {
		busy = st.ModelID
	}
	if busy != "" {
		cur += " bringing in " + busy
	}
	return fmt.Sprintf("%s: wait until it is ready, or unload it, before asking to %s %s", cur, kind, model)
}

// slotEvents streams the slot view as server-sent events: one event at
// once, one whenever it changes, a comment after 15 s of silence.
// A slot has no final state, so the stream ends only when the client goes,
// the slot's file is removed, or hal0-apid shuts down (CloseStreams).
//
// The files are read again on every tick rather than watched: they are a
// few hundred bytes, and a stat-based check could miss two atomic
// replacements within one tick of the kernel's coarse file clock.
func (s *Server) slotEvents(w http.ResponseWriter, r *http.Request) {
	c, err := s.slotConfig(r.PathValue("name"))
	if err != nil {
		writeErr(w, err)
		return
	}
	name := c.Slot.Name
	file := s.slotFile(name)
	seen, err := os.ReadFile(file)
	if err != nil {
		writeErr(w, api.Errorf(api.CodeSlotNotFound, http.StatusNotFound, "slot %s: %v", name, err))
		return
	}
	s.pollEvents(w, r, "slot", func(ctx context.Context) (key, data []byte, final, ok bool) {
		b, err := os.ReadFile(file)
		switch {
		case errors.Is(err, os.ErrNotExist):
			return nil, nil, false, false // the slot was removed
		case err != nil:
			s.logf("slot %s: %v", name, err)
		case !bytes.Equal(b, seen):
			// A half-edited file keeps the last good configuration.
			seen = b
			if nc, err := slots.ParseConfig(file, b); err != nil {
				s.logf("slot %s: %v", name, err)
			} else {
				c = nc
			}
		}
		out, _ := json.Marshal(s.slotView(ctx, c))
		return out, out, false, true
	})
}
