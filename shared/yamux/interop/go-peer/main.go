// go-peer is a hashicorp/yamux endpoint for Warren's interoperability tests.
//
// It echoes every stream the other side opens (until that side's FIN, then closes its own
// half), and with -open N it opens N streams itself, writes -size pseudo-random bytes on
// each, checks that the echo it reads back is byte-exact (SHA-256), then closes them.
//
//	go-peer -mode server -addr 127.0.0.1:0   prints "LISTEN <port>", serves one connection
//	go-peer -mode client -addr 127.0.0.1:N   dials N
//
// It prints "DONE ok" (or "DONE fail") once its own streams are checked, then keeps
// echoing until the session closes; the exit status is 0 only if every stream matched.
package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"math/rand"
	"net"
	"os"
	"sync"

	"github.com/hashicorp/yamux"
)

func main() {
	mode := flag.String("mode", "server", "client or server")
	addr := flag.String("addr", "127.0.0.1:0", "address to listen on or dial")
	open := flag.Int("open", 0, "streams to open and check")
	size := flag.Int("size", 1<<20, "bytes to send on each opened stream")
	seed := flag.Int64("seed", 1, "seed of the pseudo-random payload")
	flag.Parse()

	conn, err := connect(*mode, *addr)
	if err != nil {
		fmt.Println("ERROR", err)
		os.Exit(2)
	}
	config := yamux.DefaultConfig()
	config.LogOutput = io.Discard
	var session *yamux.Session
	if *mode == "server" {
		session, err = yamux.Server(conn, config)
	} else {
		session, err = yamux.Client(conn, config)
	}
	if err != nil {
		fmt.Println("ERROR", err)
		os.Exit(2)
	}

	go echoAll(session)

	ok := true
	if *open > 0 {
		var wg sync.WaitGroup
		results := make([]error, *open)
		for i := 0; i < *open; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				results[i] = roundTrip(session, *size, *seed+int64(i))
			}(i)
		}
		wg.Wait()
		for i, err := range results {
			if err != nil {
				ok = false
				fmt.Printf("STREAM %d FAIL %v\n", i, err)
			} else {
				fmt.Printf("STREAM %d OK %d\n", i, *size)
			}
		}
	}
	if ok {
		fmt.Println("DONE ok")
	} else {
		fmt.Println("DONE fail")
	}
	<-session.CloseChan()
	if !ok {
		os.Exit(1)
	}
}

func connect(mode, addr string) (net.Conn, error) {
	if mode == "client" {
		return net.Dial("tcp", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	defer ln.Close()
	fmt.Printf("LISTEN %d\n", ln.Addr().(*net.TCPAddr).Port)
	return ln.Accept()
}

// echoAll echoes every stream the peer opens.
func echoAll(session *yamux.Session) {
	for {
		stream, err := session.AcceptStream()
		if err != nil {
			return
		}
		go func() {
			io.Copy(stream, stream)
			stream.Close()
		}()
	}
}

// roundTrip sends size pseudo-random bytes on a new stream and checks that exactly those
// bytes come back. The stream is closed (FIN) only once the whole echo has been read:
// hashicorp/yamux before 2020 makes Read return EOF as soon as the stream is half-closed
// locally and its buffer is momentarily empty, so closing the write side first would cut
// the echo short on the Go side.
func roundTrip(session *yamux.Session, size int, seed int64) error {
	stream, err := session.OpenStream()
	if err != nil {
		return err
	}
	defer stream.Close()

	sent := sha256.New()
	writeErr := make(chan error, 1)
	go func() {
		rng := rand.New(rand.NewSource(seed))
		buf := make([]byte, 64*1024)
		left := size
		for left > 0 {
			n := 1 + rng.Intn(len(buf))
			if n > left {
				n = left
			}
			rng.Read(buf[:n])
			sent.Write(buf[:n])
			if _, err := stream.Write(buf[:n]); err != nil {
				writeErr <- err
				return
			}
			left -= n
		}
		writeErr <- nil
	}()

	got := sha256.New()
	n, err := io.CopyN(got, stream, int64(size))
	if err != nil {
		return fmt.Errorf("echoed %d bytes of %d: %v", n, size, err)
	}
	if err := <-writeErr; err != nil {
		return fmt.Errorf("write: %v", err)
	}
	if !bytes.Equal(got.Sum(nil), sent.Sum(nil)) {
		return fmt.Errorf("digest %s, sent %s", hex.EncodeToString(got.Sum(nil)), hex.EncodeToString(sent.Sum(nil)))
	}
	return nil
}
