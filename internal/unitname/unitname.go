// Package unitname turns arbitrary strings into systemd unit names and back,
// byte for byte like systemd-escape(1), without importing go-systemd.
//
// hal0 starts one instance of a template unit per job, e.g.
// hal0-pull@.service for a pull of "Qwen/Qwen3-4B-GGUF:Q4_K_M". The instance
// part of the unit name must be escaped exactly the way systemd unescapes
// it, because the unit reads the job back through the %I specifier. Any
// difference (upper-case hex, a kept "-", a kept leading ".") would make %I
// return a different string than the one the daemon recorded.
//
// The rules are systemd's do_escape()/unit_name_unescape() (src/basic/unit-name.c):
//
//   - "/" becomes "-" (so "-" itself must be escaped);
//   - ASCII letters, digits, ":", "_" and "." are kept, except a leading "."
//     (systemd never creates hidden unit names);
//   - every other byte, including each byte of a multi-byte UTF-8
//     sequence, becomes \xNN with lower-case hex.
//
// Only the non-path mode of systemd-escape is implemented: hal0 escapes
// identifiers, not file-system paths (the --path mode would also trim and
// collapse slashes, which would lose information).
package unitname

import (
	"errors"
	"fmt"
	"strings"
)

// MaxUnitNameLen is the longest unit name systemd accepts, in bytes
// (UNIT_NAME_MAX is 256 including the terminating NUL).
const MaxUnitNameLen = 255

// ErrInvalid is wrapped by every error this package returns.
var ErrInvalid = errors.New("invalid unit name")

// unitTypes are the suffixes systemd accepts (unit_type_table).
var unitTypes = map[string]bool{
	"service": true, "mount": true, "swap": true, "socket": true, "target": true, "device": true,
	"automount": true, "timer": true, "path": true, "slice": true, "scope": true,
}

const hexDigits = "0123456789abcdef"

// keep reports whether systemd-escape copies byte c unchanged (when it is not
// the first byte). "-" and "\" are in systemd's VALID_CHARS but are escaped
// explicitly, since they are the escape syntax themselves.
func keep(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == ':' || c == '_' || c == '.'
}

// Escape returns s escaped like `systemd-escape s` (without --path).
// The empty string escapes to the empty string, as in systemd-escape.
func Escape(s string) string {
	var b strings.Builder
	b.Grow(len(s) + len(s)/2)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '/':
			b.WriteByte('-')
		case keep(c) && !(i == 0 && c == '.'):
			b.WriteByte(c)
		default:
			b.WriteString(`\x`)
			b.WriteByte(hexDigits[c>>4])
			b.WriteByte(hexDigits[c&0xf])
		}
	}
	return b.String()
}

// Unescape reverses Escape like `systemd-escape --unescape s`: "-" becomes
// "/", \xNN (either hex case) becomes the byte NN, everything else is copied.
//
// It returns an error wrapping ErrInvalid for a "\" not followed by "x" and
// two hex digits, and (unlike systemd, which silently truncates its C string
// there) for \x00: a NUL can never reach a unit through %I intact.
func Unescape(s string) (string, error) {
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '-':
			b.WriteByte('/')
		case '\\':
			if i+3 >= len(s) || s[i+1] != 'x' {
				return "", fmt.Errorf("%w: %q: incomplete escape at byte %d", ErrInvalid, s, i)
			}
			hi, ok1 := unhex(s[i+2])
			lo, ok2 := unhex(s[i+3])
			if !ok1 || !ok2 {
				return "", fmt.Errorf("%w: %q: bad hex in escape at byte %d", ErrInvalid, s, i)
			}
			v := hi<<4 | lo
			if v == 0 {
				return "", fmt.Errorf("%w: %q: escaped NUL at byte %d", ErrInvalid, s, i)
			}
			b.WriteByte(v)
			i += 3
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), nil
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// Validate reports whether unit is a name systemd accepts (unit_name_is_valid
// with plain, instance and template names allowed): at most MaxUnitNameLen
// bytes, a known type suffix, a non-empty prefix, and only the characters
// [A-Za-z0-9:_.\-@] before the suffix, not starting with "@".
func Validate(unit string) error {
	if unit == "" {
		return fmt.Errorf("%w: empty", ErrInvalid)
	}
	if len(unit) > MaxUnitNameLen {
		return fmt.Errorf("%w: %d bytes, longer than %d: %.40q…", ErrInvalid, len(unit), MaxUnitNameLen, unit)
	}
	dot := strings.LastIndexByte(unit, '.')
	if dot <= 0 {
		return fmt.Errorf("%w: %q has no name before a type suffix", ErrInvalid, unit)
	}
	if !unitTypes[unit[dot+1:]] {
		return fmt.Errorf("%w: %q: unknown unit type %q", ErrInvalid, unit, unit[dot+1:])
	}
	if unit[0] == '@' {
		return fmt.Errorf("%w: %q starts with @", ErrInvalid, unit)
	}
	for i := 0; i < dot; i++ {
		if c := unit[i]; !keep(c) && c != '-' && c != '\\' && c != '@' {
			return fmt.Errorf("%w: %q: byte %q at %d is not allowed", ErrInvalid, unit, c, i)
		}
	}
	return nil
}

// split returns the parts of a template or instance name "prefix@inst.type".
func split(unit string) (prefix, inst, suffix string, err error) {
	if err := Validate(unit); err != nil {
		return "", "", "", err
	}
	at := strings.IndexByte(unit, '@')
	if at < 0 {
		return "", "", "", fmt.Errorf("%w: %q is neither a template nor an instance (no @)", ErrInvalid, unit)
	}
	dot := strings.LastIndexByte(unit, '.')
	return unit[:at], unit[at+1 : dot], unit[dot:], nil
}

// Instance returns the name of template's instance for the (unescaped)
// instance string, like `systemd-escape --template=TEMPLATE INSTANCE`:
//
//	Instance("hal0-pull@.service", "Qwen/Qwen3-4B-GGUF:Q4_K_M") == `hal0-pull@Qwen-Qwen3\x2d4B\x2dGGUF:Q4_K_M.service`
//
// template must be a template name such as "name@.service"; anything else is
// a programming error and panics (templates are constants in hal0).
// systemd refuses an empty instance and names longer than MaxUnitNameLen, and
// so does systemd-escape; Instance cannot return an error, so callers that
// take the instance from users must check the result with Validate.
func Instance(template, instance string) string {
	prefix, inst, suffix, err := split(template)
	if err != nil || inst != "" {
		panic(fmt.Sprintf("unitname.Instance: %q is not a template unit name like \"name@.service\"", template))
	}
	return prefix + "@" + Escape(instance) + suffix
}

// ParseInstance splits an instance unit name into its template and its
// unescaped instance string, the inverse of Instance (like
// `systemd-escape --unescape --instance UNIT` for the instance part).
func ParseInstance(unit string) (template, instance string, err error) {
	prefix, inst, suffix, err := split(unit)
	if err != nil {
		return "", "", err
	}
	if inst == "" {
		return "", "", fmt.Errorf("%w: %q is a template, it has no instance", ErrInvalid, unit)
	}
	instance, err = Unescape(inst)
	if err != nil {
		return "", "", err
	}
	return prefix + "@" + suffix, instance, nil
}

// ShellQuote quotes a unit name for a command line a person will paste:
// escaped names contain backslashes, which an unquoted shell word eats
// (`journalctl -u hal0-pull@a\x2db.service` would look for "ax2db").
func ShellQuote(s string) string {
	if strings.IndexFunc(s, func(r rune) bool {
		return !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || strings.ContainsRune("@:._-", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
