// oidc-provider: a real OpenID provider for agentproxy's tests, on a loopback address.
//
// It is zitadel/oidc's example provider (its OpenID endpoints, its login page and its in-memory
// storage, all unchanged) with what agentproxy's tests need around it:
//
//   - users from a JSON file, each with a password and groups; the groups are the `groups` claim
//     of ID tokens and JWT access tokens, the user name their `preferred_username`;
//   - three clients: a confidential one for the dashboard (secret from $OIDC_CLIENT_SECRET, any
//     http://127.0.0.1:PORT/auth/callback), a public one for the CLI (PKCE, any loopback port),
//     and a public one whose ID tokens live -short-lifetime (to see tokens expire);
//   - POST /test/rotate: a new signing key; with ?keep=1 the old one stays published beside it.
//
// Usage: oidc-provider -users FILE [-port N] ; it prints "issuer http://127.0.0.1:N/" once it listens.
package main

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/google/uuid"

	"github.com/zitadel/oidc/v3/example/server/exampleop"
	"github.com/zitadel/oidc/v3/example/server/storage"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

type signingKey struct {
	id  string
	key *rsa.PrivateKey
}

func (k *signingKey) SignatureAlgorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (k *signingKey) Key() any                                    { return k.key }
func (k *signingKey) ID() string                                  { return k.id }

type publicKey struct{ k *signingKey }

func (p publicKey) ID() string                         { return p.k.id }
func (p publicKey) Algorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (p publicKey) Use() string                        { return "sig" }
func (p publicKey) Key() any                           { return &p.k.key.PublicKey }

func newKey() *signingKey {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return &signingKey{id: uuid.NewString(), key: key}
}

// client changes what the tests need of an example client: JWT access tokens, the ID tokens'
// lifetime, and redirect globs (any port of 127.0.0.1 for the dashboard's callback).
type client struct {
	op.Client
	lifetime time.Duration
	globs    []string
}

func (c client) AccessTokenType() op.AccessTokenType { return op.AccessTokenTypeJWT }
func (c client) IDTokenLifetime() time.Duration      { return c.lifetime }
func (c client) RedirectURIGlobs() []string          { return c.globs }
func (c client) PostLogoutRedirectURIGlobs() []string {
	return nil
}

// store is the example storage with rotating keys, groups and the wrapped clients.
type store struct {
	*storage.Storage
	mu      sync.Mutex
	keys    []*signingKey // the first signs; all are published
	users   map[string]user
	clients map[string]client
}

type user struct {
	Username string
	Groups   []string
}

func (s *store) SigningKey(ctx context.Context) (op.SigningKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.keys[0], nil
}

func (s *store) SignatureAlgorithms(ctx context.Context) ([]jose.SignatureAlgorithm, error) {
	return []jose.SignatureAlgorithm{jose.RS256}, nil
}

func (s *store) KeySet(ctx context.Context) ([]op.Key, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	keys := make([]op.Key, 0, len(s.keys))
	for _, k := range s.keys {
		keys = append(keys, publicKey{k})
	}
	return keys, nil
}

func (s *store) rotate(keep bool) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := newKey()
	if keep {
		s.keys = append([]*signingKey{k}, s.keys...)
	} else {
		s.keys = []*signingKey{k}
	}
	return k.id
}

func (s *store) GetClientByClientID(ctx context.Context, id string) (op.Client, error) {
	if c, ok := s.clients[id]; ok {
		return c, nil
	}
	return s.Storage.GetClientByClientID(ctx, id)
}

func (s *store) addClaims(userinfo *oidc.UserInfo, userID string) {
	if u, ok := s.users[userID]; ok {
		userinfo.PreferredUsername = u.Username
		userinfo.AppendClaims("groups", u.Groups)
	}
}

func (s *store) SetUserinfoFromRequest(ctx context.Context, userinfo *oidc.UserInfo, token op.IDTokenRequest, scopes []string) error {
	if err := s.Storage.SetUserinfoFromRequest(ctx, userinfo, token, scopes); err != nil {
		return err
	}
	s.addClaims(userinfo, token.GetSubject())
	return nil
}

func (s *store) SetUserinfoFromToken(ctx context.Context, userinfo *oidc.UserInfo, tokenID, subject, origin string) error {
	if err := s.Storage.SetUserinfoFromToken(ctx, userinfo, tokenID, subject, origin); err != nil {
		return err
	}
	s.addClaims(userinfo, userinfo.Subject)
	return nil
}

func (s *store) GetPrivateClaimsFromScopes(ctx context.Context, userID, clientID string, scopes []string) (map[string]any, error) {
	claims, err := s.Storage.GetPrivateClaimsFromScopes(ctx, userID, clientID, scopes)
	if err != nil {
		return nil, err
	}
	if claims == nil {
		claims = map[string]any{}
	}
	if u, ok := s.users[userID]; ok {
		claims["preferred_username"] = u.Username
		claims["groups"] = u.Groups
	}
	return claims, nil
}

func main() {
	port := flag.Int("port", 0, "port on 127.0.0.1 (0: any free one)")
	usersFile := flag.String("users", "", "users: JSON object of id to {ID, Username, Password, Email, EmailVerified, Groups}")
	webID := flag.String("client-id", "agentproxy", "the dashboard's confidential client (secret: $OIDC_CLIENT_SECRET)")
	cliID := flag.String("cli-client-id", "agentproxy-cli", "the CLI's public client (PKCE, loopback redirects)")
	shortID := flag.String("short-client-id", "agentproxy-short", "a public client whose ID tokens live -short-lifetime")
	short := flag.Duration("short-lifetime", 2*time.Second, "lifetime of the short client's ID tokens")
	flag.Parse()
	secret := os.Getenv("OIDC_CLIENT_SECRET")
	if *usersFile == "" || secret == "" {
		fmt.Fprintln(os.Stderr, "oidc-provider: -users FILE and $OIDC_CLIENT_SECRET are required")
		os.Exit(2)
	}
	raw, err := os.ReadFile(*usersFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, "oidc-provider:", err)
		os.Exit(2)
	}
	users := map[string]user{}
	if err := json.Unmarshal(raw, &users); err != nil {
		fmt.Fprintln(os.Stderr, "oidc-provider: users:", err)
		os.Exit(2)
	}
	userStore, err := storage.StoreFromFile(*usersFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, "oidc-provider: users:", err)
		os.Exit(2)
	}
	listener, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", *port))
	if err != nil {
		fmt.Fprintln(os.Stderr, "oidc-provider:", err)
		os.Exit(1)
	}
	issuer := fmt.Sprintf("http://%s/", listener.Addr().String())

	web := storage.WebClient(*webID, secret, "http://127.0.0.1/auth/callback")
	cli := storage.NativeClient(*cliID, "http://127.0.0.1/callback")
	shortClient := storage.NativeClient(*shortID, "http://127.0.0.1/callback")
	s := &store{
		Storage: storage.NewStorageWithClients(userStore, map[string]*storage.Client{
			*webID: web, *cliID: cli, *shortID: shortClient}),
		keys:  []*signingKey{newKey()},
		users: users,
		clients: map[string]client{
			*webID:   {Client: web, lifetime: time.Hour, globs: []string{"http://127.0.0.1:*/auth/callback"}},
			*cliID:   {Client: cli, lifetime: time.Hour},
			*shortID: {Client: shortClient, lifetime: *short},
		},
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	router := exampleop.SetupServer(issuer, s, logger, false)
	router.Post("/test/rotate", func(w http.ResponseWriter, r *http.Request) {
		id := s.rotate(r.URL.Query().Get("keep") == "1")
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{"kid": id})
	})
	fmt.Printf("issuer %s\n", issuer)
	_ = os.Stdout.Sync()
	server := &http.Server{Handler: router, ReadHeaderTimeout: 10 * time.Second}
	if err := server.Serve(listener); err != http.ErrServerClosed {
		fmt.Fprintln(os.Stderr, "oidc-provider:", err)
		os.Exit(1)
	}
}
