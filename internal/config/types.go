package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Size is a byte count written in TOML as an integer or a string such as
// "64MiB", "1.5GB" or "512k".
type Size int64

var sizeUnits = []struct {
	suffix string
	mult   float64
}{
	{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30}, {"tib", 1 << 40},
	{"kb", 1e3}, {"mb", 1e6}, {"gb", 1e9}, {"tb", 1e12},
	{"k", 1 << 10}, {"m", 1 << 20}, {"g", 1 << 30}, {"t", 1 << 40},
	{"b", 1},
}

// ParseSize parses a byte count with an optional unit.
func ParseSize(s string) (Size, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	mult := 1.0
	for _, u := range sizeUnits {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.mult
			break
		}
	}
	f, err := strconv.ParseFloat(t, 64)
	if err != nil || f < 0 || f*mult > 1<<62 {
		return 0, fmt.Errorf("invalid size %q (want e.g. 512MiB, 2GB or a byte count)", s)
	}
	return Size(f * mult), nil
}

// UnmarshalText implements encoding.TextUnmarshaler for TOML strings.
func (s *Size) UnmarshalText(b []byte) error {
	v, err := ParseSize(string(b))
	*s = v
	return err
}

// UnmarshalTOML accepts a plain integer as well as a string.
func (s *Size) UnmarshalTOML(v any) error {
	switch x := v.(type) {
	case int64:
		if x < 0 {
			return fmt.Errorf("invalid size %d: negative", x)
		}
		*s = Size(x)
		return nil
	case string:
		return s.UnmarshalText([]byte(x))
	}
	return fmt.Errorf("invalid size %v: want an integer or a string like \"64MiB\"", v)
}

// String formats with binary units.
func (s Size) String() string { return FormatBytes(int64(s)) }

// FormatBytes renders n with a binary unit, e.g. "1.5 GiB".
func FormatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}

// Duration is a time.Duration written in TOML as "30s", "5m" or an integer
// number of seconds.
type Duration time.Duration

// UnmarshalText parses Go duration syntax.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(strings.TrimSpace(string(b)))
	if err != nil || v < 0 {
		return fmt.Errorf("invalid duration %q (want e.g. 30s, 5m, 1h)", b)
	}
	*d = Duration(v)
	return nil
}

// UnmarshalTOML also accepts integer seconds.
func (d *Duration) UnmarshalTOML(v any) error {
	switch x := v.(type) {
	case int64:
		if x < 0 {
			return fmt.Errorf("invalid duration %d: negative", x)
		}
		*d = Duration(time.Duration(x) * time.Second)
		return nil
	case string:
		return d.UnmarshalText([]byte(x))
	}
	return fmt.Errorf("invalid duration %v: want a string like \"30s\" or integer seconds", v)
}

// D returns the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) String() string { return time.Duration(d).String() }

// Secret holds a credential. Every formatting path redacts it, so a Secret
// that ends up in a log line, a job record or an error message leaks
// nothing; only Reveal gives the value, and only HTTP header code calls it.
type Secret struct{ v string }

// NewSecret wraps s.
func NewSecret(s string) Secret { return Secret{v: s} }

// Reveal returns the raw value.
func (s Secret) Reveal() string { return s.v }

// IsSet reports whether a value is present.
func (s Secret) IsSet() bool { return s.v != "" }

func (s Secret) String() string {
	if s.v == "" {
		return ""
	}
	return "[redacted]"
}

// GoString keeps %#v from printing the value.
func (s Secret) GoString() string { return s.String() }

// MarshalText keeps encoders from writing the value.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }
