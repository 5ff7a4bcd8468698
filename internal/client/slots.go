package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"

	"github.com/hal0ai/hal0/internal/api"
)

// slotPath is /api/slots/{name}{suffix}. Slot names are plain words, but
// escaping keeps a caller's typo from reaching a different route.
func slotPath(name, suffix string) string {
	return "/api/slots/" + url.PathEscape(name) + suffix
}

// Slots lists every configured slot with its state.
func (c *Client) Slots(ctx context.Context) ([]*api.Slot, error) {
	var out []*api.Slot
	return out, c.call(ctx, http.MethodGet, "/api/slots", nil, &out)
}

// Slot returns one slot; api.CodeSlotNotFound when there is no such slot.
func (c *Client) Slot(ctx context.Context, name string) (*api.Slot, error) {
	var s api.Slot
	if err := c.call(ctx, http.MethodGet, slotPath(name, ""), nil, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// LoadSlot asks hal0-slotd to load model on the slot; an empty model loads
// the slot's default. The reply comes once the request is recorded, long
// before the model is up: follow it with SlotEvents. A request the slot's
// state does not allow is api.CodeSlotIllegal (409).
func (c *Client) LoadSlot(ctx context.Context, name, model string) (*api.SlotAccepted, error) {
	return c.slotAction(ctx, name, "/load", &api.SlotActionRequest{Model: model})
}

// SwapSlot asks hal0-slotd to replace whatever the slot runs with model.
func (c *Client) SwapSlot(ctx context.Context, name, model string) (*api.SlotAccepted, error) {
	return c.slotAction(ctx, name, "/swap", &api.SlotActionRequest{Model: model})
}

// UnloadSlot asks hal0-slotd to stop the slot.
func (c *Client) UnloadSlot(ctx context.Context, name string) (*api.SlotAccepted, error) {
	return c.slotAction(ctx, name, "/unload", nil)
}

func (c *Client) slotAction(ctx context.Context, name, suffix string, body *api.SlotActionRequest) (*api.SlotAccepted, error) {
	var out api.SlotAccepted
	// A nil *SlotActionRequest must be sent as no body, not as "null".
	var b any
	if body != nil {
		b = body
	}
	if err := c.call(ctx, http.MethodPost, slotPath(name, suffix), b, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ErrStopEvents, returned by the function given to SlotEvents, ends the
// stream; SlotEvents then returns nil.
var ErrStopEvents = errors.New("stop following the slot")

// ErrSlotStreamEnded is returned (wrapped) by SlotEvents when the stream
// closed while the caller still wanted events: hal0-apid restarted or shut
// down, a proxy cut it, or the slot's configuration was removed. Whatever
// the slot was doing goes on; call SlotEvents again to keep following.
var ErrSlotStreamEnded = errors.New("the slot event stream of hal0-apid ended")

// SlotEvents follows a slot: fn receives the slot at once and then every
// change, until fn returns ErrStopEvents (SlotEvents returns nil) or
// another error (returned as is). A slot has no final state, so the stream
// otherwise runs until ctx ends (ctx's error) or the stream is cut
// (ErrSlotStreamEnded, wrapped).
func (c *Client) SlotEvents(ctx context.Context, name string, fn func(*api.Slot) error) error {
	return c.follow(ctx, slotPath(name, "/events"), "slot event stream", "slot", ErrSlotStreamEnded, func(data []byte) error {
		var s api.Slot
		if err := json.Unmarshal(data, &s); err != nil {
			return fmt.Errorf("bad slot event from hal0-apid: %w", err)
		}
		if err := fn(&s); err != nil {
			if errors.Is(err, ErrStopEvents) {
				return errFollowDone
			}
			return err
		}
		return nil
	})
}
