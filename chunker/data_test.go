package chunker

import (
	"math/rand/v2"
)

// seed32 expands a small test seed into a ChaCha8 key, so that every test
// input is reproducible from one printed number.
func seed32(seed uint64) [32]byte {
	var s [32]byte
	for i := range 8 {
		s[i] = byte(seed >> (8 * i))
	}
	copy(s[8:], "lockstep chunker test data")
	return s
}

// randomData returns n pseudo-random bytes determined by seed.
func randomData(seed uint64, n int) []byte {
	b := make([]byte, n)
	rand.NewChaCha8(seed32(seed)).Read(b)
	return b
}

// textData returns n bytes of compressible pseudo-text determined by seed:
// words from a small vocabulary drawn with a Zipf distribution, separated by
// spaces, with punctuation and line breaks, like source code or markup.
func textData(seed uint64, n int) []byte {
	r := rand.New(rand.NewChaCha8(seed32(seed)))
	const letters = "etaoinshrdlcumwfgypbvkjxqz"
	vocab := make([][]byte, 4096)
	for i := range vocab {
		w := make([]byte, 1+r.IntN(10))
		for j := range w {
			// Favour the frequent letters, as natural text does.
			w[j] = letters[min(r.IntN(len(letters)), r.IntN(len(letters)))]
		}
		vocab[i] = w
	}
	zipf := rand.NewZipf(r, 1.1, 1, uint64(len(vocab)-1))
	b := make([]byte, 0, n+16)
	col := 0
	for len(b) < n {
		w := vocab[zipf.Uint64()]
		b = append(b, w...)
		col += len(w) + 1
		switch x := r.IntN(100); {
		case x < 5:
			b = append(b, ". "...)
		case x < 8:
			b = append(b, ", "...)
		case col > 72:
			b = append(b, '\n')
			col = 0
		default:
			b = append(b, ' ')
		}
	}
	return b[:n]
}
