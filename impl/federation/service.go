// Package federation is Myelin's server-server side: this server's signing
// identity and key document, other servers' keys (fetched, checked and
// cached), server discovery, signed outbound requests and verification of
// inbound ones (X-Matrix), the durable outbox of m.device_list_update EDUs
// and its sender, the transaction receiver, and the cache of remote users'
// device lists with its gap repair (resync).
//
// Nothing here speaks HTTP to clients of this server: impl/ssapi adapts the
// generated server-server interface to Service, and impl/app wires
// Verifier into the "signedRequest" security scheme.
package federation

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/uptrace/bun"

	"github.com/myelin-hs/myelin/impl/config"
	"github.com/myelin-hs/myelin/impl/e2ekeys"
	"github.com/myelin-hs/myelin/impl/matrixerr"
	"github.com/myelin-hs/myelin/impl/mxid"
	"github.com/myelin-hs/myelin/impl/storage"
)

// Service bundles the federation parts of one server process.
type Service struct {
	Config   *config.Config
	Store    *storage.Store
	Log      *slog.Logger
	Keys     *e2ekeys.Service
	Identity *Identity
	Resolver *Resolver
	Keyring  *Keyring
	Client   *Client
	Verifier *Verifier
	Sender   *Sender
	Lists    *DeviceLists
	Receiver *Receiver
}

// New builds the federation service and makes sure this server has a
// signing key (generated on first start). keys serves local users' keys to
// other servers.
func New(ctx context.Context, cfg *config.Config, store *storage.Store, log *slog.Logger, keys *e2ekeys.Service) (*Service, error) {
	httpc := NewHTTPClient()
	s := &Service{Config: cfg, Store: store, Log: log, Keys: keys}
	s.Identity = &Identity{Store: store, ServerName: cfg.ServerName, KeyValidity: cfg.KeyValidity}
	if err := s.Identity.Ensure(ctx); err != nil {
		return nil, err
	}
	s.Resolver = &Resolver{Static: cfg.FederationResolve, HTTP: httpc}
	s.Keyring = &Keyring{Store: store, Resolver: s.Resolver, HTTP: httpc}
	s.Client = &Client{Identity: s.Identity, Resolver: s.Resolver, HTTP: httpc}
	s.Sender = &Sender{Store: store, Client: s.Client, ServerName: cfg.ServerName, Log: log, DropEvery: cfg.FederationTestDrop}
	s.Verifier = &Verifier{ServerName: cfg.ServerName, Keys: s.Keyring, Seen: s.Sender.PeerAlive}
	s.Lists = &DeviceLists{Store: store, Client: s.Client, Log: log}
	s.Receiver = &Receiver{Store: store, Lists: s.Lists, Log: log}
	if cfg.FederationTestDrop > 0 {
		log.Warn("federation-test-drop is set: outgoing device list updates are dropped on purpose (TEST ONLY)", "every", cfg.FederationTestDrop)
	}
	return s, nil
}

// Background returns the tasks to run while serving: the outbox sender,
// the resync worker and the pruning of old transaction IDs.
func (s *Service) Background() []func(ctx context.Context) {
	return []func(ctx context.Context){
		s.Sender.Run,
		s.Lists.Run,
		func(ctx context.Context) {
			t := time.NewTicker(time.Hour)
			defer t.Stop()
			for {
				if err := s.Receiver.Prune(ctx); err != nil && ctx.Err() == nil {
					s.Log.Warn("federation: prune received transactions", "err", err)
				}
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
			}
		},
	}
}

// localUser checks that userID is a user of this server.
func (s *Service) localUser(userID string) error {
	server, ok := mxid.ServerName(userID)
	if !ok {
		return matrixerr.InvalidParam(fmt.Sprintf("Invalid user ID %q", userID))
	}
	if server != s.Config.ServerName {
		return matrixerr.InvalidParam("User " + userID + " is not a user of this server")
	}
	return nil
}

// subscribe records that origin follows the device lists of users.
func (s *Service) subscribe(ctx context.Context, origin string, users []string) error {
	if len(users) == 0 {
		return nil
	}
	var have []string
	if err := s.Store.R.NewSelect().Model((*storage.DeviceListSubscriber)(nil)).Column("user_id").
		Where("server_name = ? AND user_id IN (?)", origin, bun.In(users)).Scan(ctx, &have); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return err
	}
	known := map[string]bool{}
	for _, u := range have {
		known[u] = true
	}
	now := time.Now().UnixMilli()
	var rows []storage.DeviceListSubscriber
	for _, u := range users {
		if !known[u] {
			rows = append(rows, storage.DeviceListSubscriber{UserID: u, ServerName: origin, CreatedTS: now})
		}
	}
	if len(rows) == 0 {
		return nil
	}
	// A device change takes its user's stream row lock and then reads the
	// subscribers (devices.Core.AppendChanges, the outbox hook). Taking
	// the same locks here makes the two orderable on PostgreSQL too: a
	// change either commits before this subscription (and is in the
	// answer read after it) or reads it (and is sent to origin). Without
	// them a change could read the subscribers just before this commits
	// and itself commit just after the answer was read: lost to origin.
	// The rows are locked in user order, so subscriptions cannot deadlock.
	locks := make([]storage.UserStream, len(rows))
	for i, r := range rows {
		locks[i] = storage.UserStream{UserID: r.UserID}
	}
	slices.SortFunc(locks, func(a, b storage.UserStream) int { return strings.Compare(a.UserID, b.UserID) })
	return s.Store.Tx(ctx, func(ctx context.Context, tx bun.Tx) error {
		if _, err := tx.NewInsert().Model(&locks).On("CONFLICT (user_id) DO UPDATE").
			Set("stream_id = ?TableAlias.stream_id").Exec(ctx); err != nil {
			return fmt.Errorf("lock device-list streams: %w", err)
		}
		_, err := tx.NewInsert().Model(&rows).On("CONFLICT DO NOTHING").Exec(ctx)
		return err
	})
}

// existingUsers returns which of the local user IDs have accounts.
func (s *Service) existingUsers(ctx context.Context, ids []string) ([]string, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	var out []string
	err := s.Store.R.NewSelect().Model((*storage.User)(nil)).Column("user_id").
		Where("user_id IN (?)", bun.In(ids)).Order("user_id").Scan(ctx, &out)
	if errors.Is(err, sql.ErrNoRows) {
		err = nil
	}
	return out, err
}

// UserDevices answers GET /user/devices/{userId} for origin and subscribes
// origin to the user's updates. stream_id is read before the devices, so
// the list is at least as new as stream_id: updates after it that are
// already reflected are applied again harmlessly by the receiver.
func (s *Service) UserDevices(ctx context.Context, origin, userID string) (UserDevices, error) {
	if err := s.localUser(userID); err != nil {
		return UserDevices{}, err
	}
	exists, err := s.existingUsers(ctx, []string{userID})
	if err != nil {
		return UserDevices{}, err
	}
	if len(exists) == 0 {
		return UserDevices{}, matrixerr.NotFound("No such user")
	}
	// Subscribe first: a change committed after this is sent to origin,
	// one committed before is in the answer.
	if err := s.subscribe(ctx, origin, exists); err != nil {
		return UserDevices{}, err
	}
	out := UserDevices{UserID: userID, Devices: []UserDevice{}}
	if err := s.Store.R.NewSelect().Model((*storage.UserStream)(nil)).Column("stream_id").
		Where("user_id = ?", userID).Scan(ctx, &out.StreamID); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return UserDevices{}, err
	}
	devs, err := e2ekeys.LoadDevices(ctx, s.Store.R, []string{userID}, nil)
	if err != nil {
		return UserDevices{}, err
	}
	sigs, err := e2ekeys.OwnerSignatures(ctx, s.Store.R, userID)
	if err != nil {
		return UserDevices{}, err
	}
	cs, err := e2ekeys.LocalCrossSigningKeys(ctx, s.Store.R, []string{userID}, "")
	if err != nil {
		return UserDevices{}, err
	}
	out.MasterKey, out.SelfSigningKey = cs.Master[userID], cs.SelfSigning[userID]
	for _, d := range devs {
		if d.Keys == nil {
			// The spec requires keys on every listed device; one without
			// identity keys cannot take part in encryption, which is what
			// this list is for, so it is left out (and appears once it
			// uploads keys, through the change stream).
			continue
		}
		keys, err := e2ekeys.WithOwnerSignatures(d.Keys, sigs, d.DeviceID)
		if err != nil {
			return UserDevices{}, err
		}
		ud := UserDevice{DeviceID: d.DeviceID, Keys: keys}
		if s.Config.PublishDeviceNames {
			ud.DisplayName = d.DisplayName
		}
		out.Devices = append(out.Devices, ud)
	}
	return out, nil
}

// QueryKeys answers POST /user/keys/query for origin: local users' device
// keys (display names only if published), master and self-signing keys;
// origin is subscribed to them.
func (s *Service) QueryKeys(ctx context.Context, origin string, users map[string][]string) (e2ekeys.LocalKeys, error) {
	var local []string
	for u := range users {
		if s.localUser(u) == nil {
			local = append(local, u)
		}
	}
	exists, err := s.existingUsers(ctx, local)
	if err != nil {
		return e2ekeys.LocalKeys{}, err
	}
	if err := s.subscribe(ctx, origin, exists); err != nil {
		return e2ekeys.LocalKeys{}, err
	}
	return s.Keys.QueryLocalKeys(ctx, users, s.Config.PublishDeviceNames)
}

// ClaimKeys answers POST /user/keys/claim: one-time keys of local devices
// (their fallback keys when none is left).
func (s *Service) ClaimKeys(ctx context.Context, req map[string]map[string]string) (map[string]map[string]map[string]json.RawMessage, error) {
	return s.Keys.ClaimLocal(ctx, req)
}
