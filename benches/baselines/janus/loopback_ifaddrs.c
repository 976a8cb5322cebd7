/*
 * loopback_ifaddrs.so: LD_PRELOAD shim for the Janus baseline.
 *
 * Janus 1.1.2 (src/ice.c, janus_ice_setup_local) skips every interface whose flags
 * contain IFF_LOOPBACK when it picks the addresses to gather ICE candidates on, before
 * it looks at ice_enforce_list/ice_ignore_list. In a loopback-only network namespace
 * it would then gather nothing and no peer connection could be set up. This shim
 * wraps getifaddrs() and clears IFF_LOOPBACK in the returned list, so 127.0.0.1 is
 * offered like any other host address; janus.jcfg's ice_enforce_list then keeps
 * 127.0.0.1 only. Nothing else in Janus' media path is affected.
 *
 * Build: gcc -shared -fPIC -O2 -o loopback_ifaddrs.so loopback_ifaddrs.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <stddef.h>

int getifaddrs(struct ifaddrs **ifap)
{
	static int (*real_getifaddrs)(struct ifaddrs **) = NULL;
	if (real_getifaddrs == NULL)
		real_getifaddrs = (int (*)(struct ifaddrs **))dlsym(RTLD_NEXT, "getifaddrs");
	if (real_getifaddrs == NULL)
		return -1;
	int rc = real_getifaddrs(ifap);
	if (rc == 0) {
		for (struct ifaddrs *ifa = *ifap; ifa != NULL; ifa = ifa->ifa_next)
			ifa->ifa_flags &= ~IFF_LOOPBACK;
	}
	return rc;
}
