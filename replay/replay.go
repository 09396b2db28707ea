// Package replay is the channel that feeds stored messages (.eml files and
// folders of them) through the same ingest.Handle as the servers, for
// testing a configuration, re-processing an export, or answering what
// mailgw would do with a message.
package replay

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"mailgw/ingest"
)

// Handler is the part of ingest.Handler replay needs.
type Handler interface {
	Handle(ctx context.Context, env ingest.Envelope, raw []byte) ingest.Result
}

// Result is one replayed file.
type Result struct {
	File string
	ingest.Result
	Err error // the file could not be read
}

// Files expands paths into the files to replay: a file is taken as it is, a
// folder gives its *.eml files in name order (not its subfolders, which
// hold other corpora with their own expectations).
func Files(paths []string) ([]string, error) {
	var out []string
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("replay: %w", err)
		}
		if !fi.IsDir() {
			out = append(out, p)
			continue
		}
		entries, err := os.ReadDir(p)
		if err != nil {
			return nil, fmt.Errorf("replay: %w", err)
		}
		names := make([]string, 0, len(entries))
		for _, e := range entries {
			if e.Type().IsRegular() && strings.EqualFold(filepath.Ext(e.Name()), ".eml") {
				names = append(names, e.Name())
			}
		}
		sort.Strings(names)
		for _, n := range names {
			out = append(out, filepath.Join(p, n))
		}
	}
	return out, nil
}

// Run replays files one after another, so that later files see what
// earlier ones wrote, and calls emit with each result. Reading stops at
// maxBytes+1 bytes: enough for the parser to see the message is too large
// without holding all of it.
func Run(ctx context.Context, h Handler, files []string, to []string, maxBytes int64, emit func(Result) error) error {
	for _, f := range files {
		if err := ctx.Err(); err != nil {
			return err
		}
		r := Result{File: f}
		raw, err := readLimited(f, maxBytes+1)
		if err != nil {
			r.Err = err
		} else {
			r.Result = h.Handle(ctx, ingest.Envelope{Channel: ingest.ChannelReplay, Recipients: to}, raw)
		}
		if err := emit(r); err != nil {
			return err
		}
	}
	return nil
}

func readLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("replay: %w", err)
	}
	defer f.Close()
	raw, err := io.ReadAll(io.LimitReader(f, limit))
	if err != nil {
		return nil, fmt.Errorf("replay: read %s: %w", path, err)
	}
	return raw, nil
}
