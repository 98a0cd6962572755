// getifaddrs() (glibc and musl read it over NETLINK_ROUTE), SIOCGIFCONF and
// if_nametoindex, compared with Linux in the same network namespace.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

static int cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int main(void) {
  struct ifaddrs *ifa;
  if (getifaddrs(&ifa) != 0) { perror("getifaddrs"); return 1; }
  char *lines[512];
  int n = 0;
  for (struct ifaddrs *i = ifa; i && n < 512; i = i->ifa_next) {
    char addr[INET6_ADDRSTRLEN] = "-";
    int fam = i->ifa_addr ? i->ifa_addr->sa_family : -1;
    if (fam == AF_INET) inet_ntop(AF_INET, &((struct sockaddr_in *)i->ifa_addr)->sin_addr, addr, sizeof addr);
    if (fam == AF_INET6) inet_ntop(AF_INET6, &((struct sockaddr_in6 *)i->ifa_addr)->sin6_addr, addr, sizeof addr);
    char *l;
    if (asprintf(&l, "%s family %d addr %s up %d loopback %d", i->ifa_name, fam, addr, !!(i->ifa_flags & IFF_UP),
                 !!(i->ifa_flags & IFF_LOOPBACK)) < 0) return 1;
    lines[n++] = l;
  }
  freeifaddrs(ifa);
  qsort(lines, n, sizeof lines[0], cmp);
  for (int i = 0; i < n; i++) printf("%s\n", lines[i]);
  printf("lo index %u\n", if_nametoindex("lo"));
  int s = socket(AF_INET, SOCK_DGRAM, 0);
  struct ifreq r[64];
  struct ifconf c = {.ifc_len = sizeof r, .ifc_req = r};
  if (ioctl(s, SIOCGIFCONF, &c) != 0) { perror("SIOCGIFCONF"); return 1; }
  n = 0;
  for (int i = 0; i < c.ifc_len / (int)sizeof(struct ifreq); i++) {
    char addr[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &((struct sockaddr_in *)&r[i].ifr_addr)->sin_addr, addr, sizeof addr);
    if (asprintf(&lines[n++], "ifconf %s %s", r[i].ifr_name, addr) < 0) return 1;
  }
  qsort(lines, n, sizeof lines[0], cmp);
  for (int i = 0; i < n; i++) printf("%s\n", lines[i]);
  return 0;
}
