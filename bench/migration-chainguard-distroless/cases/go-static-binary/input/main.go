// Command hello is a minimal HTTP server: GET / answers with a greeting.
package main

import (
	"fmt"
	"log"
	"net/http"
)

func main() {
	http.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "hello from a distroless image")
	})
	log.Fatal(http.ListenAndServe(":8080", nil))
}
