package slotd

import (
	"errors"
	"fmt"

	"github.com/hal0ai/hal0/internal/ref"
	"github.com/hal0ai/hal0/internal/slots"
)

// onRequest applies the slot's request.json if it is new. hal0-apid has
// checked it against the state it saw; by now the state may have moved
// on, so it can still be refused here, which is recorded in the status
// (ExtraRequest) and changes nothing else.
func (d *daemon) onRequest(name string) {
	sl := d.slots[name]
	if sl == nil {
		return
	}
	r, err := slots.ReadRequest(slots.RequestPath(d.cfg.Paths.StateDir, name))
	if err != nil {
		// Reported, not recorded: a malformed file has no id to record,
		// and the next request replaces it.
		d.log.Errorf("slot %s: %v", name, err)
		return
	}
	if r == nil || r.ID == extraString(&sl.st, ExtraRequestID) {
		return
	}
	out := RequestOutcome{ID: r.ID, Kind: r.Kind, Model: r.Model, Outcome: "applied", At: d.now().UTC()}
	ev, err := d.requestEvent(sl, r)
	if err == nil {
		err = d.apply(sl, ev, func(st *slots.Status) {
			st.Extra[ExtraRequestID] = r.ID
			st.Extra[ExtraRequest] = out
		})
		if err == nil {
			d.log.Printf("slot %s: applied request %s (%s %s)", name, r.ID, r.Kind, r.Model)
			return
		}
	}
	var ie *slots.IllegalTransitionError
	if !errors.As(err, &ie) && !errors.Is(err, errBadRequest) {
		// Not the request's fault (the state could not be saved): leave
		// it unapplied, to be taken up at the next start.
		d.log.Errorf("slot %s: request %s: %v", name, r.ID, err)
		return
	}
	out.Outcome, out.Error = "refused", err.Error()
	d.log.Printf("slot %s: refused request %s (%s %s): %v", name, r.ID, r.Kind, r.Model, err)
	d.update(sl, func(st *slots.Status) {
		st.Extra[ExtraRequestID] = r.ID
		st.Extra[ExtraRequest] = out
	})
}

var errBadRequest = errors.New("bad request")

// requestEvent turns a request into the reducer's event: the model in its
// canonical spelling (the registry id and pull unit instance), the slot's
// default for a load without one, and whether it is installed.
func (d *daemon) requestEvent(sl *slot, r *slots.Request) (slots.Event, error) {
	bad := func(format string, a ...any) (slots.Event, error) {
		return slots.Event{}, fmt.Errorf("%w: %s", errBadRequest, fmt.Sprintf(format, a...))
	}
	switch r.Kind {
	case slots.EvUnload:
		return slots.Event{Kind: slots.EvUnload}, nil
	case slots.EvLoad, slots.EvSwap:
	default:
		return bad("unknown request kind %q", r.Kind)
	}
	model := r.Model
	if model == "" && r.Kind == slots.EvLoad {
		model = sl.cfg.Model.Default
	}
	if model == "" {
		return bad("%s needs a model, and slot %s has no model.default", r.Kind, sl.name)
	}
	rf, err := ref.Parse(model)
	if err != nil {
		return bad("%v", err)
	}
	id := rf.String()
	installed, err := d.installed(id)
	if err != nil {
		return slots.Event{}, err
	}
	if !installed && rf.Kind == ref.KindLocal {
		return bad("model %s is not in the registry, and a registry id cannot be pulled", id)
	}
	return slots.Event{Kind: r.Kind, Model: id, Installed: installed}, nil
}
