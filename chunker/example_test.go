package chunker_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"sync"

	"lockstep/chunker"
)

// One Chunker per goroutine hashes many files at once; Reset reuses its
// buffer and hasher from one file to the next.
func ExampleChunker() {
	files := map[string]string{
		"index.html": strings.Repeat("<p>hello</p>\n", 10000),
		"robots.txt": "User-agent: *\n",
		"empty":      "",
	}
	type result struct {
		name   string
		chunks int
	}
	names := make(chan string)
	results := make(chan result)
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			c := chunker.New(nil, chunker.DefaultParams)
			for name := range names {
				c.Reset(strings.NewReader(files[name]))
				n := 0
				for {
					_, err := c.Next()
					if err == io.EOF {
						break
					}
					if err != nil {
						panic(err) // a strings.Reader does not fail
					}
					n++
				}
				results <- result{name, n}
			}
		})
	}
	go func() {
		for _, name := range []string{"empty", "index.html", "robots.txt"} {
			names <- name
		}
		close(names)
		wg.Wait()
		close(results)
	}()
	counts := map[string]int{}
	for r := range results {
		counts[r.name] = r.chunks
	}
	fmt.Println(counts)
	// Output: map[empty:0 index.html:1 robots.txt:1]
}

// SplitParallel hashes one large input on several goroutines and gives the
// same manifest as Split.
func ExampleSplitParallel() {
	data := bytes.Repeat([]byte("lockstep keeps directories identical. "), 200000)
	m, err := chunker.SplitParallel(context.Background(), bytes.NewReader(data), chunker.DefaultParams, 2)
	if err != nil {
		panic(err)
	}
	same, _ := chunker.Split(bytes.NewReader(data), chunker.DefaultParams)
	fmt.Println(m.Size(), len(m.Chunks) > 1, m.Hash() == same.Hash())
	// Output: 7600000 true true
}
