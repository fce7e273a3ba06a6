package identity

import (
	"crypto/sha256"
	"sync"
	"time"
)

// tokenCache remembers verified tokens until they expire, keyed by the
// SHA-256 of the raw token so the cache holds no bearer credentials.
// Verifying an RS256 signature costs tens of microseconds; a hit costs
// one hash and one map read.
type tokenCache struct {
	mu  sync.RWMutex
	max int
	m   map[[sha256.Size]byte]cachedToken
}

type cachedToken struct {
	claims map[string]any
	until  time.Time
}

// The map grows with use: sized for max up front it was a third of the live
// heap (1 MB at the default 4096), which every GC cycle scanned.
func newTokenCache(max int) *tokenCache {
	return &tokenCache{max: max, m: make(map[[sha256.Size]byte]cachedToken)}
}

func (c *tokenCache) get(k [sha256.Size]byte, now time.Time) (map[string]any, bool) {
	c.mu.RLock()
	e, ok := c.m[k]
	c.mu.RUnlock()
	if !ok || !now.Before(e.until) {
		return nil, false
	}
	return e.claims, true
}

func (c *tokenCache) put(k [sha256.Size]byte, claims map[string]any, until, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[k]; !ok && len(c.m) >= c.max {
		c.evict(now)
	}
	c.m[k] = cachedToken{claims: claims, until: until}
}

// evict drops expired entries seen in a short scan, or else one arbitrary
// entry (map iteration order is randomised). The scan is bounded so a full
// cache never makes a request pay for walking all of it.
func (c *tokenCache) evict(now time.Time) {
	const scan = 32
	n, dropped := 0, false
	var victim [sha256.Size]byte
	for k, e := range c.m {
		if n == 0 {
			victim = k
		}
		if !now.Before(e.until) {
			delete(c.m, k)
			dropped = true
		}
		if n++; n == scan {
			break
		}
	}
	if !dropped {
		delete(c.m, victim)
	}
}

func (c *tokenCache) size() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.m)
}
