package hubtest_test

import (
	"fmt"
	"io"
	"net/http"

	"github.com/hal0ai/hal0/internal/hubtest"
)

// A download test typically serves a generated split GGUF, injects a fault
// and then checks what the client did through Stats and Requests.
func Example() {
	hub, err := hubtest.New(hubtest.Options{Token: "hf_exampleexampleexampleexampleexample"})
	if err != nil {
		panic(err)
	}
	defer hub.Close()
	repo := hub.AddRepo(hubtest.Repo{
		ID:    "demo/tiny-GGUF",
		Files: hubtest.GenerateGGUFShards("", "Q4_K_M/tiny", "Q4_K_M", 2, 1<<16, 1),
	})
	shard := repo.Files[0]
	// The first CDN response for the shard dies after 1000 bytes.
	hub.AddFault(hubtest.Fault{Path: shard.Path, Where: "cdn", DropAfter: 1000, Times: 1})

	resp, err := http.Get(hub.ResolveURL(repo.ID, "main", shard.Path)) // follows the 302 to the CDN
	if err != nil {
		panic(err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	fmt.Println(shard.Path, n, err)
	fmt.Println("bytes sent:", hub.Stats().File(repo.ID, shard.Path).Bytes)
	// Output:
	// Q4_K_M/tiny-Q4_K_M-00001-of-00002.gguf 1000 unexpected EOF
	// bytes sent: 1000
}
