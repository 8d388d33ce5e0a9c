package main

// `myelin user admin|lock|suspend USER [on|off]` and `myelin user whois
// USER`: the admin endpoints' actions (impl/sessions) from the command
// line, without their checks (whoever runs the CLI owns the database).

import (
	"context"
	"flag"
	"fmt"
	"io"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/myelin-hs/myelin/impl/app"
	"github.com/myelin-hs/myelin/impl/config"
	"github.com/myelin-hs/myelin/impl/sessions"
	"github.com/myelin-hs/myelin/impl/storage"
)

// withServices opens the database of cfg and runs fn with the services.
func withServices(ctx context.Context, cfg *config.Config, fn func(sv *app.Services) error) error {
	store, err := storage.Open(ctx, cfg.Database, storage.Options{MaxConns: 2})
	if err != nil {
		return err
	}
	defer store.Close()
	return fn(app.NewServices(cfg, store))
}

var flagOf = map[string]sessions.Flag{"admin": sessions.FlagAdmin, "lock": sessions.FlagLocked, "suspend": sessions.FlagSuspended}

// moderateCommand sets (on|off) or shows (no argument) a flag.
func moderateCommand(ctx context.Context, cfg *config.Config, sub string, fs *flag.FlagSet, args []string, stdout io.Writer) error {
	usage := "myelin user " + sub + " USER [on|off]"
	pos, err := parseArgsRange(fs, args, 1, 2, usage)
	if err != nil {
		return err
	}
	flag := flagOf[sub]
	return withServices(ctx, cfg, func(sv *app.Services) error {
		user := sv.Accounts.AdminUserID(pos[0])
		if len(pos) == 2 {
			var on bool
			switch pos[1] {
			case "on":
				on = true
			case "off":
			default:
				return errUsage(usage)
			}
			return sv.Sessions.SetFlag(ctx, user, flag, on)
		}
		st, err := sv.Sessions.Status(ctx, user)
		if err != nil {
			return err
		}
		on := map[sessions.Flag]bool{sessions.FlagAdmin: st.Admin, sessions.FlagLocked: st.Locked, sessions.FlagSuspended: st.Suspended}[flag]
		fmt.Fprintf(stdout, "%s %s: %v\n", user, flag, on)
		return nil
	})
}

// whoisCommand prints a user's flags and devices with where they were last
// seen.
func whoisCommand(ctx context.Context, cfg *config.Config, fs *flag.FlagSet, args []string, stdout io.Writer) error {
	pos, err := parseArgs(fs, args, 1, "myelin user whois USER")
	if err != nil {
		return err
	}
	return withServices(ctx, cfg, func(sv *app.Services) error {
		user := sv.Accounts.AdminUserID(pos[0])
		st, err := sv.Sessions.Status(ctx, user)
		if err != nil {
			return err
		}
		w, err := sv.Sessions.AdminWhoIs(ctx, user)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s admin=%v locked=%v suspended=%v\n", w.UserID, st.Admin, st.Locked, st.Suspended)
		ids := make([]string, 0, len(w.Devices))
		for id := range w.Devices {
			ids = append(ids, id)
		}
		slices.Sort(ids)
		tw := tabwriter.NewWriter(stdout, 2, 8, 2, ' ', 0)
		fmt.Fprintln(tw, "DEVICE\tIP\tLAST SEEN")
		for _, id := range ids {
			ip, seen := "-", "never"
			if c := w.Devices[id]; len(c) > 0 {
				ip, seen = c[0].IP, time.UnixMilli(c[0].LastSeen).UTC().Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\n", id, ip, seen)
		}
		return tw.Flush()
	})
}
