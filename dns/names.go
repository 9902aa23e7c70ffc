package dns

import "strings"

// validLabel reports whether a registry name can be a DNS label: 1 to 63
// letters, digits, '-' or '_'. Names that cannot are skipped.
func validLabel(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// fold is the case-insensitive form of a label (DNS compares ASCII case-insensitively).
func fold(s string) string { return strings.ToLower(s) }

// splitRelative returns the labels of qname below zone (both lower case and
// fully qualified), outermost last: "a.b.zone." -> ["a", "b"]. ok is false
// when qname is not in the zone.
func splitRelative(qname, zone string) (labels []string, ok bool) {
	if qname == zone {
		return nil, true
	}
	rel, ok := strings.CutSuffix(qname, "."+zone)
	if !ok || rel == "" {
		return nil, false
	}
	return strings.Split(rel, "."), true
}
