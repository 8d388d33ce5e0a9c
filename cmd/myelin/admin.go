package main

// Admin commands on accounts and registration tokens. They are thin: the
// rules live in impl/accounts, reached through the same app.NewServices
// the server uses, on the same database (also while servers run on it).

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/term"

	"github.com/myelin-hs/myelin/impl/accounts"
	"github.com/myelin-hs/myelin/impl/app"
	"github.com/myelin-hs/myelin/impl/config"
	"github.com/myelin-hs/myelin/impl/storage"
)

func init() {
	commands["user"] = userCommand
	commands["registration-token"] = registrationTokenCommand
}

// stdin is where passwords are read from when --password is not given.
var stdin io.Reader = os.Stdin

// errUsage marks a wrong command line; the message says what was expected.
type errUsage string

func (e errUsage) Error() string { return "usage: " + string(e) }

// withAccounts opens the database of cfg and runs fn with the account
// service.
func withAccounts(ctx context.Context, cfg *config.Config, fn func(svc *accounts.Service) error) error {
	store, err := storage.Open(ctx, cfg.Database, storage.Options{MaxConns: 2})
	if err != nil {
		return err
	}
	defer store.Close()
	return fn(app.NewServices(cfg, store).Accounts)
}

// parseArgs parses flags that may come before, between or after the
// positional arguments ("myelin user create alice --password x" reads
// naturally), and wants want of those.
func parseArgs(fs *flag.FlagSet, args []string, want int, usage string) ([]string, error) {
	return parseArgsRange(fs, args, want, want, usage)
}

// parseArgsRange is parseArgs for min to max positional arguments.
func parseArgsRange(fs *flag.FlagSet, args []string, min, max int, usage string) ([]string, error) {
	fs.SetOutput(io.Discard)
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, errUsage(usage)
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		pos, args = append(pos, args[0]), args[1:]
	}
	if len(pos) < min || len(pos) > max {
		return nil, errUsage(usage)
	}
	return pos, nil
}

// readPassword asks on a terminal (twice, without echo) or reads the first
// line of piped input.
func readPassword(stderr io.Writer) (string, error) {
	if f, ok := stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprint(stderr, "Password: ")
		p1, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(stderr)
		if err != nil {
			return "", err
		}
		fmt.Fprint(stderr, "Again: ")
		p2, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(stderr)
		if err != nil {
			return "", err
		}
		if string(p1) != string(p2) {
			return "", errors.New("the passwords differ")
		}
		return string(p1), nil
	}
	line, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", errors.New("no password given (use --password or pipe it on stdin)")
	}
	return line, nil
}

func passwordArg(given string, stderr io.Writer) (string, error) {
	if given != "" {
		return given, nil
	}
	return readPassword(stderr)
}

const userUsage = `myelin user create USER [--password P]
       myelin user passwd USER [--password P] [--keep-devices]
       myelin user deactivate USER [--erase]
       myelin user list
       myelin user login-token USER
       myelin user threepid add USER email|msisdn ADDRESS
       myelin user admin|lock|suspend USER [on|off]
       myelin user whois USER
(USER is a localpart or a full user ID; without --password the password is
read from the terminal or the first line of stdin)`

func userCommand(ctx context.Context, cfg *config.Config, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errUsage(userUsage)
	}
	sub, args := args[0], args[1:]
	fs := flag.NewFlagSet("user "+sub, flag.ContinueOnError)
	switch sub {
	case "create":
		password := fs.String("password", "", "")
		pos, err := parseArgs(fs, args, 1, "myelin user create USER [--password P]")
		if err != nil {
			return err
		}
		pw, err := passwordArg(*password, stderr)
		if err != nil {
			return err
		}
		return withAccounts(ctx, cfg, func(svc *accounts.Service) error {
			uid, err := svc.CreateUser(ctx, pos[0], pw)
			if err == nil {
				fmt.Fprintln(stdout, uid)
			}
			return err
		})
	case "passwd":
		password := fs.String("password", "", "")
		keep := fs.Bool("keep-devices", false, "")
		pos, err := parseArgs(fs, args, 1, "myelin user passwd USER [--password P] [--keep-devices]")
		if err != nil {
			return err
		}
		pw, err := passwordArg(*password, stderr)
		if err != nil {
			return err
		}
		return withAccounts(ctx, cfg, func(svc *accounts.Service) error {
			return svc.SetPassword(ctx, svc.AdminUserID(pos[0]), pw, !*keep)
		})
	case "deactivate":
		erase := fs.Bool("erase", false, "")
		pos, err := parseArgs(fs, args, 1, "myelin user deactivate USER [--erase]")
		if err != nil {
			return err
		}
		return withAccounts(ctx, cfg, func(svc *accounts.Service) error {
			return svc.DeactivateUser(ctx, svc.AdminUserID(pos[0]), *erase)
		})
	case "list":
		if _, err := parseArgs(fs, args, 0, "myelin user list"); err != nil {
			return err
		}
		return withAccounts(ctx, cfg, func(svc *accounts.Service) error {
			users, err := svc.ListUsers(ctx)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(stdout, 2, 8, 2, ' ', 0)
			fmt.Fprintln(tw, "USER ID\tGUEST\tDEACTIVATED\tDEVICES\tCREATED")
			for _, u := range users {
				fmt.Fprintf(tw, "%s\t%v\t%v\t%d\t%s\n", u.UserID, u.IsGuest, u.Deactivated, u.Devices,
					time.UnixMilli(u.CreatedTS).UTC().Format(time.RFC3339))
			}
			return tw.Flush()
		})
	case "login-token":
		pos, err := parseArgs(fs, args, 1, "myelin user login-token USER")
		if err != nil {
			return err
		}
		return withAccounts(ctx, cfg, func(svc *accounts.Service) error {
			tok, exp, err := svc.NewLoginToken(ctx, svc.AdminUserID(pos[0]))
			if err == nil {
				fmt.Fprintln(stdout, tok)
				fmt.Fprintf(stderr, "single use, valid until %s\n", exp.UTC().Format(time.RFC3339))
			}
			return err
		})
	case "threepid":
		pos, err := parseArgs(fs, args, 4, "myelin user threepid add USER email|msisdn ADDRESS")
		if err != nil {
			return err
		}
		if pos[0] != "add" {
			return errUsage("myelin user threepid add USER email|msisdn ADDRESS")
		}
		return withAccounts(ctx, cfg, func(svc *accounts.Service) error {
			return svc.AddThreePID(ctx, svc.AdminUserID(pos[1]), pos[2], pos[3])
		})
	case "admin", "lock", "suspend":
		return moderateCommand(ctx, cfg, sub, fs, args, stdout)
	case "whois":
		return whoisCommand(ctx, cfg, fs, args, stdout)
	}
	return errUsage(userUsage)
}

const tokenUsage = `myelin registration-token create [--uses N] [--expires 7d] [TOKEN]
       myelin registration-token list
       myelin registration-token delete TOKEN`

func registrationTokenCommand(ctx context.Context, cfg *config.Config, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errUsage(tokenUsage)
	}
	sub, args := args[0], args[1:]
	fs := flag.NewFlagSet("registration-token "+sub, flag.ContinueOnError)
	switch sub {
	case "create":
		uses := fs.Int64("uses", 0, "")
		expires := fs.String("expires", "", "")
		pos, err := parseArgsRange(fs, args, 0, 1, "myelin registration-token create [--uses N] [--expires 7d] [TOKEN]")
		if err != nil {
			return err
		}
		var token string
		if len(pos) == 1 {
			token = pos[0]
		}
		var usesPtr *int64 // nil: unlimited; an explicit 0 is refused below
		fs.Visit(func(f *flag.Flag) {
			if f.Name == "uses" {
				usesPtr = uses
			}
		})
		var expPtr *time.Time
		if *expires != "" {
			d, err := config.ParseDuration(*expires)
			if err != nil || d <= 0 {
				return fmt.Errorf("--expires: %q is not a positive duration (e.g. 12h, 7d)", *expires)
			}
			exp := time.Now().Add(d)
			expPtr = &exp
		}
		return withAccounts(ctx, cfg, func(svc *accounts.Service) error {
			rt, err := svc.CreateRegistrationToken(ctx, token, usesPtr, expPtr)
			if err == nil {
				fmt.Fprintln(stdout, rt.Token)
			}
			return err
		})
	case "list":
		if _, err := parseArgs(fs, args, 0, "myelin registration-token list"); err != nil {
			return err
		}
		return withAccounts(ctx, cfg, func(svc *accounts.Service) error {
			toks, err := svc.ListRegistrationTokens(ctx)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(stdout, 2, 8, 2, ' ', 0)
			fmt.Fprintln(tw, "TOKEN\tUSES ALLOWED\tPENDING\tCOMPLETED\tEXPIRES")
			for _, t := range toks {
				allowed, expiry := "unlimited", "never"
				if t.UsesAllowed != nil {
					allowed = strconv.FormatInt(*t.UsesAllowed, 10)
				}
				if t.ExpiryTS != nil {
					expiry = time.UnixMilli(*t.ExpiryTS).UTC().Format(time.RFC3339)
				}
				fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\n", t.Token, allowed, t.Pending, t.Completed, expiry)
			}
			return tw.Flush()
		})
	case "delete":
		pos, err := parseArgs(fs, args, 1, "myelin registration-token delete TOKEN")
		if err != nil {
			return err
		}
		return withAccounts(ctx, cfg, func(svc *accounts.Service) error {
			return svc.DeleteRegistrationToken(ctx, pos[0])
		})
	}
	return errUsage(tokenUsage)
}
