package parse

import "strings"

// unflow undoes format=flowed (RFC 3676): lines ending in a space continue
// on the next line of the same quote depth, and space-stuffing is removed.
// Agents then see paragraphs, not the sender's 72-column wrapping.
func unflow(s string, delsp bool) string {
	var b strings.Builder
	b.Grow(len(s))
	prevSoft, prevDepth := false, 0
	for i := 0; len(s) > 0 || i == 0; i++ {
		line, rest, _ := strings.Cut(s, "\n")
		s = rest
		depth := 0
		for depth < len(line) && line[depth] == '>' {
			depth++
		}
		content := strings.TrimPrefix(line[depth:], " ")
		// "-- " is the signature separator, never a soft break (§4.3).
		soft := strings.HasSuffix(content, " ") && content != "-- "
		if soft && delsp {
			content = content[:len(content)-1]
		}
		if !prevSoft || depth != prevDepth {
			if i > 0 {
				b.WriteByte('\n')
			}
			if depth > 0 {
				b.WriteString(line[:depth])
				if content != "" {
					b.WriteByte(' ')
				}
			}
		}
		b.WriteString(content)
		prevSoft, prevDepth = soft, depth
		if rest == "" {
			break
		}
	}
	return b.String()
}
