package transport

import (
	"context"
	"crypto/tls"
	"io"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"lockstep/chunker"
	"lockstep/identity"
	"lockstep/protocol"
)

// The benchmarks compare, on loopback: bytes pumped through one raw quic-go
// stream (no protocol), this package's chunk transfer (64 KiB chunks, 16 in
// flight, random and compressible data), TCP with TLS 1.3 for reference,
// and the round trip of one small request on an open connection. Each
// reports MB/s of chunk (payload) data and the process CPU time per MB.
// BenchmarkChunkVsRaw alternates raw and chunk transfers in small batches
// so that other load on the machine hits both alike, and reports their
// ratio directly; BenchmarkBatchVsRaw does the same with the chunks fetched
// in batches, as a large file is.

const (
	benchChunk    = 64 << 10
	benchParallel = 16
)

// cpuMeter reports the process CPU time per MB moved, a figure that other
// load on the machine disturbs less than throughput does.
type cpuMeter struct{ start time.Duration }

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func startCPU() cpuMeter { return cpuMeter{cpuTime()} }

func (m cpuMeter) report(b *testing.B, bytes int64) {
	used := cpuTime() - m.start
	b.ReportMetric(float64(used.Microseconds())/(float64(bytes)/1e6), "cpu-µs/MB")
}

// rawPump is one raw quic-go stream between two endpoints with this
// package's TLS and QUIC settings; pump(n) sends n 64 KiB buffers through
// it and waits until the receiver has read them.
func rawPump(b *testing.B) (pump func(n int)) {
	ida, idb := newIdentity(b, "a"), newIdentity(b, "b")
	trA, _ := New(Config{Identity: ida, Handler: func(context.Context, *Conn) {}, Peers: []Peer{{ID: idb.ID}}})
	trB, _ := New(Config{Identity: idb, Handler: func(context.Context, *Conn) {}, Peers: []Peer{{ID: ida.ID}}})
	udpB, udpA := listenUDP(b), listenUDP(b)
	qtB, qtA := &quic.Transport{Conn: udpB}, &quic.Transport{Conn: udpA}
	b.Cleanup(func() { qtA.Close(); qtB.Close() })
	ln, err := qtB.Listen(trB.serverTLS(), trB.quicConfig())
	mustf(b, err, "listen")
	ctx := context.Background()
	received := make(chan int, 1)
	go func() {
		qc, err := ln.Accept(ctx)
		if err != nil {
			return
		}
		s, err := qc.AcceptStream(ctx)
		if err != nil {
			return
		}
		buf := make([]byte, benchChunk)
		for {
			if _, err := io.ReadFull(s, buf); err != nil {
				return
			}
			received <- 1
		}
	}()
	var presented identity.NodeID
	qc, err := qtA.Dial(ctx, udpB.LocalAddr(), trA.clientTLS(Peer{ID: idb.ID, Name: "b"}, &presented), trA.quicConfig())
	mustf(b, err, "dial")
	b.Cleanup(func() { qc.CloseWithError(0, "") })
	s, err := qc.OpenStreamSync(ctx)
	mustf(b, err, "open")
	data := randomChunk(benchChunk)
	return func(n int) {
		done := make(chan struct{})
		go func() {
			for range n {
				<-received
			}
			close(done)
		}()
		for range n {
			if _, err := s.Write(data); err != nil {
				b.Fatal(err)
			}
		}
		<-done
	}
}

// chunkPair is two running transports, the second serving chunks made by
// gen; fetch(n) transfers n chunks with benchParallel requests in flight.
func chunkPair(b *testing.B, mode Compression, gen func(i int) []byte) (fetch func(n int), c *Conn) {
	var chunks [][]byte
	for i := range 64 {
		chunks = append(chunks, gen(i))
	}
	ida, idb := newIdentity(b, "a"), newIdentity(b, "b")
	nb := startNode(b, idb, "127.0.0.1:0", []Peer{{ID: ida.ID, Name: "a"}}, withChunks(newChunkStore(chunks...)),
		func(c *Config) { c.Compression = mode })
	na := startNode(b, ida, "127.0.0.1:0", []Peer{nb.peer("b")})
	ca := na.nextConn(b)
	nb.nextConn(b)
	reqs := make([]protocol.ChunkRequest, len(chunks))
	for i, c := range chunks {
		reqs[i] = req(c)
	}
	// Like an engine that writes each chunk out and reuses its buffer.
	bufs := make([][]byte, benchParallel)
	for i := range bufs {
		bufs[i] = make([]byte, ChunkBufferSize(benchChunk))
	}
	return func(n int) {
		var next atomic.Int64
		var wg sync.WaitGroup
		for w := range benchParallel {
			wg.Go(func() {
				for {
					i := next.Add(1) - 1
					if i >= int64(n) {
						return
					}
					if _, err := ca.RequestChunkInto(context.Background(), reqs[i%int64(len(reqs))], bufs[w]); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
	}, ca
}

// batchPair is chunkPair fetching with chunk batches of perBatch chunks,
// benchParallel/2 batches in flight, each received into one buffer the way
// the engine assembles a large file.
func batchPair(b *testing.B, gen func(i int) []byte, perBatch int) (fetch func(n int)) {
	var chunks [][]byte
	for i := range 64 {
		chunks = append(chunks, gen(i))
	}
	ida, idb := newIdentity(b, "a"), newIdentity(b, "b")
	nb := startNode(b, idb, "127.0.0.1:0", []Peer{{ID: ida.ID, Name: "a"}}, withChunks(newChunkStore(chunks...)))
	na := startNode(b, ida, "127.0.0.1:0", []Peer{nb.peer("b")})
	ca := na.nextConn(b)
	cb := nb.nextConn(b)
	helloWith(b, cb, ca, Features)
	helloWith(b, ca, cb, Features)
	all := batchOf(chunks...)
	const inFlight = benchParallel / 2
	bufs := make([][]byte, inFlight)
	for i := range bufs {
		bufs[i] = make([]byte, ChunkBufferSize(benchChunk))
	}
	return func(n int) {
		var next atomic.Int64
		var wg sync.WaitGroup
		for w := range inFlight {
			wg.Go(func() {
				for {
					first := int(next.Add(int64(perBatch))) - perBatch
					if first >= n {
						return
					}
					var req []protocol.BatchChunk
					for i := first; i < min(first+perBatch, n); i++ {
						req = append(req, all[i%len(all)])
					}
					err := ca.RequestChunksInto(context.Background(), "docroot", req, bufs[w], func(_ int, _ []byte, err error) error { return err })
					if err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
	}
}

func BenchmarkRawQUICStream(b *testing.B) {
	pump := rawPump(b)
	b.SetBytes(benchChunk)
	b.ResetTimer()
	cpu := startCPU()
	pump(b.N)
	b.StopTimer()
	cpu.report(b, int64(b.N)*benchChunk)
}

var benchData = []struct {
	name string
	gen  func(i int) []byte
	mode Compression
}{
	{"random", func(int) []byte { return randomChunk(benchChunk) }, CompressAuto},
	{"text", func(i int) []byte { return textChunk(benchChunk, i) }, CompressAuto},
	{"text-always-compressed", func(i int) []byte { return textChunk(benchChunk, i) }, CompressAlways},
	{"text-never-compressed", func(i int) []byte { return textChunk(benchChunk, i) }, CompressNever},
}

func BenchmarkChunkTransfer(b *testing.B) {
	for _, kind := range benchData {
		b.Run(kind.name, func(b *testing.B) {
			fetch, ca := chunkPair(b, kind.mode, kind.gen)
			b.SetBytes(benchChunk)
			b.ResetTimer()
			cpu := startCPU()
			fetch(b.N)
			b.StopTimer()
			cpu.report(b, int64(b.N)*benchChunk)
			st := ca.Stats()
			b.ReportMetric(float64(st.Received)/float64(st.ReceivedRaw), "wire/raw")
		})
	}
}

func timed(total *time.Duration, f func()) {
	start := time.Now()
	f()
	*total += time.Since(start)
}

// BenchmarkChunkVsRaw moves the same amount through a raw quic-go stream
// and as chunks, alternating in batches of 4 MiB, and reports both rates
// and chunk/raw, the figure the transfer path is judged by.
func BenchmarkChunkVsRaw(b *testing.B) {
	for _, kind := range benchData[:2] {
		b.Run(kind.name, func(b *testing.B) {
			pump := rawPump(b)
			fetch, _ := chunkPair(b, kind.mode, kind.gen)
			versusRaw(b, pump, fetch, "chunk")
		})
	}
}

// BenchmarkBatchVsRaw is BenchmarkChunkVsRaw with the chunks fetched in
// batches of 16 (1 MiB), as a large file is.
func BenchmarkBatchVsRaw(b *testing.B) {
	pump := rawPump(b)
	fetch := batchPair(b, func(int) []byte { return randomChunk(benchChunk) }, 16)
	versusRaw(b, pump, fetch, "batch")
}

// versusRaw moves b.N chunks' worth through the raw stream (pump) and as
// chunks (fetch), alternating 64 at a time, and reports both rates (the
// second as name-MB/s) and name/raw.
func versusRaw(b *testing.B, pump, fetch func(n int), name string) {
	const batch = 64
	var rawTime, chunkTime time.Duration
	b.SetBytes(benchChunk)
	b.ResetTimer()
	for done := 0; done < b.N; done += batch {
		n := min(batch, b.N-done)
		timed(&rawTime, func() { pump(n) })
		timed(&chunkTime, func() { fetch(n) })
	}
	mb := float64(b.N) * benchChunk / 1e6
	b.ReportMetric(mb/rawTime.Seconds(), "raw-MB/s")
	b.ReportMetric(mb/chunkTime.Seconds(), name+"-MB/s")
	b.ReportMetric(rawTime.Seconds()/chunkTime.Seconds(), name+"/raw")
}

// BenchmarkTextCompression moves compressible text as chunks under each
// compression policy, alternating with the same text sent uncompressed,
// and reports policy/uncompressed: the compression path must not make a
// transfer slower than sending it raw.
func BenchmarkTextCompression(b *testing.B) {
	gen := func(i int) []byte { return textChunk(benchChunk, i) }
	for _, mode := range []struct {
		name string
		mode Compression
	}{{"auto", CompressAuto}, {"always", CompressAlways}} {
		b.Run(mode.name, func(b *testing.B) {
			fetchRaw, _ := chunkPair(b, CompressNever, gen)
			fetch, c := chunkPair(b, mode.mode, gen)
			const batch = 64
			var rawTime, modeTime time.Duration
			b.SetBytes(benchChunk)
			b.ResetTimer()
			for done := 0; done < b.N; done += batch {
				n := min(batch, b.N-done)
				timed(&rawTime, func() { fetchRaw(n) })
				timed(&modeTime, func() { fetch(n) })
			}
			st := c.Stats()
			b.ReportMetric(rawTime.Seconds()/modeTime.Seconds(), "speed-vs-uncompressed")
			b.ReportMetric(float64(st.Received)/float64(st.ReceivedRaw), "wire/raw")
		})
	}
}

func BenchmarkTCPTLS(b *testing.B) {
	ida, idb := newIdentity(b, "a"), newIdentity(b, "b")
	srvConf := &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{idb.Certificate}, ClientAuth: tls.RequireAnyClientCert}
	cliConf := &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{ida.Certificate}, InsecureSkipVerify: true}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", srvConf)
	mustf(b, err, "listen")
	defer ln.Close()
	done := make(chan int64)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- -1
			return
		}
		n, _ := io.Copy(io.Discard, c)
		c.Close()
		done <- n
	}()
	c, err := tls.Dial("tcp", ln.Addr().String(), cliConf)
	mustf(b, err, "dial")
	buf := randomChunk(benchChunk)
	b.SetBytes(benchChunk)
	b.ResetTimer()
	cpu := startCPU()
	for range b.N {
		if _, err := c.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	c.CloseWrite()
	if n := <-done; n != int64(b.N)*benchChunk {
		b.Fatalf("received %d bytes", n)
	}
	b.StopTimer()
	cpu.report(b, int64(b.N)*benchChunk)
	c.Close()
}

func BenchmarkRoundTrip(b *testing.B) {
	small := []byte("a small chunk, answered at once")
	ida, idb := newIdentity(b, "a"), newIdentity(b, "b")
	nb := startNode(b, idb, "127.0.0.1:0", []Peer{{ID: ida.ID, Name: "a"}}, withChunks(newChunkStore(small)))
	na := startNode(b, ida, "127.0.0.1:0", []Peer{nb.peer("b")})
	ca := na.nextConn(b)
	nb.nextConn(b)
	ctx := context.Background()
	b.Run("chunk", func(b *testing.B) {
		r := req(small)
		for range b.N {
			if _, err := ca.RequestChunk(ctx, r); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ping", func(b *testing.B) {
		for range b.N {
			if _, err := ca.Ping(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkChunkCPU measures the per-chunk CPU work around the wire: zstd
// on text (what the compression decision weighs against the link) and the
// BLAKE3 check every received chunk gets.
func BenchmarkChunkCPU(b *testing.B) {
	text := textChunk(benchChunk, 3)
	b.Run("zstd-compress-text", func(b *testing.B) {
		b.SetBytes(benchChunk)
		for range b.N {
			var c compressor
			putCompressed(c.compress(text, 0))
		}
	})
	b.Run("zstd-decompress-text", func(b *testing.B) {
		var c compressor
		z := c.compress(text, 0)
		buf := make([]byte, benchChunk)
		b.SetBytes(benchChunk)
		for range b.N {
			if _, err := decompress(*z, benchChunk, buf); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("zstd-reject-random", func(b *testing.B) {
		random := randomChunk(benchChunk)
		b.SetBytes(benchChunk)
		for range b.N {
			var c compressor
			if c.compress(random, 0) != nil {
				b.Fatal("random data compressed")
			}
		}
	})
	b.Run("blake3", func(b *testing.B) {
		b.SetBytes(benchChunk)
		for range b.N {
			chunker.Sum(text)
		}
	})
}

// BenchmarkSmallBatch fetches 1 KiB chunks in batches of 64, as the puller
// fetches a tree of small files: what serving and receiving cost per
// chunk beyond the bytes (both ends in this process: cpu-µs/chunk counts
// both).
func BenchmarkSmallBatch(b *testing.B) {
	const size = 1 << 10
	fetch := batchPair(b, func(i int) []byte { return randomChunk(size + i) }, 64)
	cpu0 := cpuTime()
	b.ResetTimer()
	fetch(b.N)
	b.StopTimer()
	cpu := cpuTime() - cpu0
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/chunk")
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "chunks/s")
}
