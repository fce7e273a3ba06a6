package pdp

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Watch reloads dir into p whenever a file under it changes, until ctx ends.
// A broken revision is reported (onError, and the log) and the last good
// one keeps serving. Events are debounced so an editor's burst of writes
// loads once.
func (p *PDP) Watch(ctx context.Context, dir string, onError func(error)) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return err
	}
	if err := addTree(w, dir); err != nil {
		w.Close()
		return err
	}
	go func() {
		defer w.Close()
		const debounce = 100 * time.Millisecond
		timer := time.NewTimer(time.Hour)
		timer.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-w.Events:
				if !ok {
					return
				}
				if ev.Has(fsnotify.Create) {
					if st, err := os.Stat(ev.Name); err == nil && st.IsDir() && !skipDir(filepath.Base(ev.Name)) {
						_ = addTree(w, ev.Name)
					}
				}
				timer.Reset(debounce)
			case err, ok := <-w.Errors:
				if !ok {
					return
				}
				p.opts.Logger.Warn("policy watcher", "error", err)
			case <-timer.C:
				p.reload(ctx, dir, onError)
			}
		}
	}()
	return nil
}

func (p *PDP) reload(ctx context.Context, dir string, onError func(error)) {
	set, err := LoadDir(ctx, dir)
	if err != nil {
		if p.opts.Metrics != nil {
			p.opts.Metrics.reloadErrors.Inc()
		}
		rev := ""
		if cur := p.set.Load(); cur != nil {
			rev = cur.Revision
		}
		p.opts.Logger.Error("policy reload failed; last good revision keeps serving", "dir", dir, "revision", rev, "error", err.Error())
		if onError != nil {
			onError(err)
		}
		return
	}
	if cur := p.set.Load(); cur != nil && cur.Revision == set.Revision {
		return
	}
	p.Swap(set)
	if p.opts.Metrics != nil {
		p.opts.Metrics.reloads.Inc()
	}
	p.opts.Logger.Info("policy reloaded", "dir", dir, "revision", set.Revision, "files", len(set.Files))
	if len(set.Files) == 0 {
		p.opts.Logger.Warn("no policy files: every call is denied (default deny) until some arrive", "dir", dir)
	}
}

// addTree watches dir and its policy subfolders (fsnotify is not recursive).
func addTree(w *fsnotify.Watcher, dir string) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		if p != dir && skipDir(d.Name()) {
			return filepath.SkipDir
		}
		return w.Add(p)
	})
}
