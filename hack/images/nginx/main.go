// Command nginx is the /usr/sbin/nginx of the web server test images hack/images builds: a
// static file server that looks, to what critest and containerd's tests check, like the nginx
// of the images they name. It serves /usr/share/nginx/html on NGINX_PORT (default 80), logs
// each request to stdout, writes its PID to /var/run/nginx.pid, exits 0 on SIGTERM, SIGINT or
// SIGQUIT, and shows as nginx's master process does: its process name is nginx (pidof nginx
// finds it) and its command line reads "nginx: master process nginx -g daemon off;".
//
// Usage: nginx [-g 'daemon off;'] (the arguments only go into the command line shown)
package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

const (
	title   = "nginx: master process"
	root    = "/usr/share/nginx/html"
	pidFile = "/var/run/nginx.pid"
)

func main() {
	// Re-exec under the title nginx gives its master process. The kernel names the process
	// after the executable's file, so exec the file itself, not /proc/self/exe.
	if !strings.HasPrefix(os.Args[0], title) {
		exe, err := os.Executable()
		if err == nil {
			err = syscall.Exec(exe, []string{title + " " + strings.Join(os.Args, " ")}, os.Environ())
		}
		fmt.Fprintf(os.Stderr, "nginx: re-exec as the master process: %v\n", err)
		os.Exit(1)
	}
	port := os.Getenv("NGINX_PORT")
	if port == "" {
		port = "80"
	}
	ln, err := net.Listen("tcp", ":"+port)
	if err != nil {
		fmt.Fprintf(os.Stderr, "nginx: [emerg] %v\n", err)
		os.Exit(1)
	}
	err = os.MkdirAll("/var/run", 0o755)
	if err == nil {
		err = os.WriteFile(pidFile, fmt.Appendf(nil, "%d\n", os.Getpid()), 0o644)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "nginx: [alert] writing %s: %v\n", pidFile, err)
	}
	defer os.Remove(pidFile)

	files := http.FileServer(http.Dir(root))
	srv := &http.Server{
		ReadHeaderTimeout: 10 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
			files.ServeHTTP(rec, r)
			host, _, _ := net.SplitHostPort(r.RemoteAddr)
			fmt.Printf("%s - - [%s] %q %d %d %q\n", host, time.Now().Format("02/Jan/2006:15:04:05 -0700"),
				r.Method+" "+r.RequestURI+" "+r.Proto, rec.status, rec.n, r.UserAgent())
		}),
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGQUIT)
	go func() {
		<-sigs
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}()
	fmt.Fprintf(os.Stderr, "nginx: serving %s on :%s\n", root, port)
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintf(os.Stderr, "nginx: [emerg] %v\n", err)
		os.Remove(pidFile)
		os.Exit(1)
	}
}

// statusRecorder keeps what the access log line reports.
type statusRecorder struct {
	http.ResponseWriter
	status int
	n      int
}

func (r *statusRecorder) WriteHeader(status int) {
	r.status = status
	r.ResponseWriter.WriteHeader(status)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	n, err := r.ResponseWriter.Write(b)
	r.n += n
	return n, err
}
