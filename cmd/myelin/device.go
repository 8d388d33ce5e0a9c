package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/mattn/go-isatty"

	"github.com/myelin-hs/myelin/impl/app"
	"github.com/myelin-hs/myelin/impl/config"
	"github.com/myelin-hs/myelin/impl/credentials"
	"github.com/myelin-hs/myelin/impl/devices"
	"github.com/myelin-hs/myelin/impl/storage"
)

func init() { commands["device"] = deviceCommand }

const deviceUsage = `usage: myelin device list USER
       myelin device rename USER DEVICE NAME
       myelin device delete USER (DEVICE… | --all | --inactive-for DURATION)
USER is a user ID or a localpart; DURATION is e.g. 90d or 36h.`

// deleteBatch is how many devices the CLI deletes per transaction: a
// large clean-up never holds the database's write lock for long while the
// server runs.
const deleteBatch = 500

func deviceCommand(ctx context.Context, cfg *config.Config, args []string, stdout, stderr io.Writer) error {
	if len(args) < 2 {
		return errors.New(deviceUsage)
	}
	sub, user, rest := args[0], credentials.NormalizeUserID(args[1], cfg.ServerName), args[2:]
	st, err := storage.Open(ctx, cfg.Database, storage.Options{MaxConns: 1})
	if err != nil {
		return err
	}
	defer st.Close()
	// The same core as the server's, with its hooks: an admin change is
	// published over federation like any other.
	core := app.NewServices(cfg, st).Devices
	if ok, err := core.UserExists(ctx, user); err != nil {
		return err
	} else if !ok {
		return fmt.Errorf("no such user %s", user)
	}
	switch sub {
	case "list":
		if len(rest) != 0 {
			return errors.New(deviceUsage)
		}
		return listDevices(ctx, core, user, stdout)
	case "rename":
		if len(rest) != 2 {
			return errors.New(deviceUsage)
		}
		if err := core.Rename(ctx, user, rest[0], &rest[1]); err != nil {
			return fmt.Errorf("rename %s of %s: %w", rest[0], user, err)
		}
		fmt.Fprintf(stdout, "renamed %s of %s\n", rest[0], user)
		return nil
	case "delete":
		return deleteDevices(ctx, core, user, rest, stdout, stderr)
	}
	return errors.New(deviceUsage)
}

func listDevices(ctx context.Context, core *devices.Core, user string, stdout io.Writer) error {
	ds, err := core.List(ctx, user)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DEVICE\tNAME\tLAST SEEN IP\tLAST SEEN")
	for _, d := range ds {
		name, ip, seen := "-", "-", "never"
		if d.DisplayName != nil {
			name = *d.DisplayName
		}
		if d.LastSeenIP != nil {
			ip = *d.LastSeenIP
		}
		if d.LastSeenTS != nil {
			seen = time.UnixMilli(*d.LastSeenTS).UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", d.DeviceID, name, ip, seen)
	}
	return tw.Flush()
}

func deleteDevices(ctx context.Context, core *devices.Core, user string, args []string, stdout, stderr io.Writer) error {
	var all bool
	var inactive time.Duration
	var ids []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--all" || a == "-all":
			all = true
		case a == "--inactive-for" || a == "-inactive-for" || strings.HasPrefix(a, "--inactive-for="):
			v, ok := strings.CutPrefix(a, "--inactive-for=")
			if !ok {
				if i+1 == len(args) {
					return errors.New("--inactive-for needs a duration, e.g. 90d")
				}
				i++
				v = args[i]
			}
			d, err := config.ParseDuration(v)
			if err != nil || d <= 0 {
				return fmt.Errorf("--inactive-for: %q is not a positive duration (e.g. 90d)", v)
			}
			inactive = d
		case strings.HasPrefix(a, "-"):
			return fmt.Errorf("unknown flag %s\n%s", a, deviceUsage)
		default:
			ids = append(ids, a)
		}
	}
	forms := 0
	for _, set := range []bool{all, inactive > 0, len(ids) > 0} {
		if set {
			forms++
		}
	}
	if forms != 1 {
		return errors.New(deviceUsage)
	}
	if all || inactive > 0 {
		var before int64
		if inactive > 0 {
			before = time.Now().Add(-inactive).UnixMilli()
		}
		var err error
		if ids, err = core.IDs(ctx, user, before); err != nil {
			return err
		}
	}
	bar := newProgressBar(stderr)
	n, err := core.DeleteInBatches(ctx, user, ids, deleteBatch, bar.update)
	bar.done()
	fmt.Fprintf(stdout, "deleted %d devices of %s\n", n, user)
	return err
}

// progressBar draws "[#####.....] done/total" on a terminal and nothing
// elsewhere (logs and pipes get only the final count).
type progressBar struct {
	w     io.Writer
	drawn bool
}

func newProgressBar(w io.Writer) *progressBar {
	if f, ok := w.(*os.File); ok && (isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd())) {
		return &progressBar{w: w}
	}
	return &progressBar{}
}

func (p *progressBar) update(done, total int) {
	if p.w == nil || total == 0 {
		return
	}
	const width = 40
	p.drawn = true
	filled := done * width / total
	fmt.Fprintf(p.w, "\r[%s%s] %d/%d", strings.Repeat("#", filled), strings.Repeat(".", width-filled), done, total)
}

func (p *progressBar) done() {
	if p.drawn {
		fmt.Fprintln(p.w)
	}
}
