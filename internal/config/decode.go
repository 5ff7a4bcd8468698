package config

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"strings"

	"github.com/BurntSushi/toml"
)

// DecodeStrict decodes TOML data from file into v and rejects keys that v
// does not define. Errors name the file and, where it can be found, the line.
func DecodeStrict(file string, data []byte, v any) error {
	md, err := toml.NewDecoder(bytes.NewReader(data)).Decode(v)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return fmt.Errorf("%s:%d: %s", file, pe.Position.Line, pe.Message)
		}
		return fmt.Errorf("%s: %w", file, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		k := und[0]
		line := findKeyLine(data, k)
		loc := file
		if line > 0 {
			loc = fmt.Sprintf("%s:%d", file, line)
		}
		return fmt.Errorf("%s: unknown key %q (remove it or check its spelling)", loc, k.String())
	}
	return nil
}

// findKeyLine returns the 1-based line that defines key k, or 0. TOML
// metadata carries no positions for keys, so this walks the text tracking
// the current table header; it is only used to point a human at the line.
func findKeyLine(data []byte, k toml.Key) int {
	if len(k) == 0 {
		return 0
	}
	table := strings.Join(k[:len(k)-1], ".")
	last := k[len(k)-1]
	cur := ""
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		l := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(l, "[") {
			h := strings.Trim(l, "[] \t")
			if i := strings.Index(h, "#"); i >= 0 {
				h = strings.TrimSpace(h[:i])
			}
			cur = strings.ReplaceAll(h, " ", "")
			if cur == k.String() {
				return n
			}
			continue
		}
		name, _, ok := strings.Cut(l, "=")
		if !ok {
			continue
		}
		name = strings.Trim(strings.TrimSpace(name), `"`)
		if name == last && cur == table {
			return n
		}
		if full := strings.Join([]string{cur, name}, "."); strings.TrimPrefix(full, ".") == k.String() {
			return n
		}
	}
	return 0
}
