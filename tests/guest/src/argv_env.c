// issue: 3
// pie: yes
// args: one "two words" "" "quote\"d" last
// env: PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root GREETING="hello world" EMPTY=
/* The initial stack as the loader builds it: argc, argv, envp and the auxiliary
 * vector. Prints argv and envp verbatim (the harness passes exactly the header's
 * environment; PATH and HOME are given explicitly so a runtime default for them
 * cannot change the output), the value-type auxv keys that are the same natively
 * and in the sandbox, and checks that the pointer-type keys point at readable
 * memory and that AT_PHDR/AT_PHENT/AT_PHNUM/AT_ENTRY describe this very program
 * (also as static-PIE, where everything is shifted by the load bias). */
#include "guest.h"

#include <elf.h>
#include <link.h>
#include <sys/auxv.h>

extern const ElfW(Ehdr) __ehdr_start;

static unsigned long aux[64];
static int aux_present[64];

static int phdr_cb(struct dl_phdr_info *info, size_t size, void *data) {
  /* The first object reported is the main program. */
  const ElfW(Phdr) **out = data;
  if (!*out) *out = info->dlpi_phdr;
  return 1;
}

static const char *aux_string(int key) {
  CHECK(aux_present[key], "auxv key %d missing", key);
  const char *s = (const char *)aux[key];
  CHECK(s != NULL, "auxv key %d is NULL", key);
  size_t n = strlen(s); /* reads it: faults if the pointer is bad */
  CHECK(n < 4096, "auxv string %d too long", key);
  return s;
}

int main(int argc, char **argv, char **envp) {
  say("argc=%d\n", argc);
  for (int i = 0; i < argc; i++) say("argv[%d]=\"%s\"\n", i, argv[i]);
  CHECK(argv[argc] == NULL, "argv must be NULL-terminated");
  int envc = 0;
  while (envp[envc]) envc++;
  say("envc=%d\n", envc);
  for (int i = 0; i < envc; i++) say("envp[%d]=\"%s\"\n", i, envp[i]);
  CHECK(getenv("GREETING") && !strcmp(getenv("GREETING"), "hello world"), "getenv(GREETING)");

  /* The auxiliary vector follows envp's NULL. */
  ElfW(auxv_t) *av = (ElfW(auxv_t) *)(envp + envc + 1);
  int n = 0;
  for (; av->a_type != AT_NULL; av++, n++) {
    CHECK(n < 200, "auxv not terminated");
    if (av->a_type < 64) {
      aux[av->a_type] = av->a_un.a_val;
      aux_present[av->a_type] = 1;
    }
  }
  static const struct {
    int key;
    const char *name;
  } values[] = {{AT_PAGESZ, "AT_PAGESZ"}, {AT_UID, "AT_UID"},       {AT_EUID, "AT_EUID"},
                {AT_GID, "AT_GID"},       {AT_EGID, "AT_EGID"},     {AT_SECURE, "AT_SECURE"},
                {AT_PHENT, "AT_PHENT"},   {AT_CLKTCK, "AT_CLKTCK"}};
  for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
    CHECK(aux_present[values[i].key], "%s missing", values[i].name);
    say("%s=%lu\n", values[i].name, aux[values[i].key]);
  }
  say("AT_EXECFN=\"%s\"\n", aux_string(AT_EXECFN));
  say("AT_PLATFORM=\"%s\"\n", aux_string(AT_PLATFORM));
  CHECK(aux_present[AT_HWCAP], "AT_HWCAP missing");
  say("AT_HWCAP present: yes\n");

  /* AT_RANDOM: 16 readable bytes, not all zero. */
  CHECK(aux_present[AT_RANDOM] && aux[AT_RANDOM], "AT_RANDOM missing");
  const unsigned char *rnd = (const unsigned char *)aux[AT_RANDOM];
  int nonzero = 0;
  for (int i = 0; i < 16; i++) nonzero |= rnd[i];
  say("AT_RANDOM readable, not all zero: %s\n", yesno(nonzero));
  CHECK(nonzero, "AT_RANDOM is all zero");

  /* AT_PHDR/AT_PHNUM/AT_PHENT/AT_ENTRY against the program's own ELF header. */
  const ElfW(Ehdr) *eh = &__ehdr_start;
  CHECK(!memcmp(eh->e_ident, ELFMAG, SELFMAG), "__ehdr_start is not an ELF header");
  const ElfW(Phdr) *ph = (const ElfW(Phdr) *)((const char *)eh + eh->e_phoff);
  CHECK(aux_present[AT_PHDR] && aux[AT_PHDR] == (unsigned long)ph, "AT_PHDR does not point at the program headers");
  CHECK(aux_present[AT_PHNUM] && aux[AT_PHNUM] == eh->e_phnum, "AT_PHNUM");
  CHECK(aux[AT_PHENT] == sizeof(ElfW(Phdr)) && eh->e_phentsize == sizeof(ElfW(Phdr)), "AT_PHENT");
  unsigned long bias = 0;
  int found = 0;
  for (int i = 0; i < eh->e_phnum; i++)
    if (ph[i].p_type == PT_LOAD && ph[i].p_offset == 0) {
      bias = (unsigned long)eh - ph[i].p_vaddr;
      found = 1;
      break;
    }
  CHECK(found, "no PT_LOAD maps the ELF header");
  CHECK(aux_present[AT_ENTRY] && aux[AT_ENTRY] == bias + eh->e_entry, "AT_ENTRY != load bias + e_entry");
  say("e_type=%s\n", eh->e_type == ET_DYN ? "ET_DYN" : eh->e_type == ET_EXEC ? "ET_EXEC" : "other");
  const ElfW(Phdr) *dl = NULL;
  dl_iterate_phdr(phdr_cb, &dl);
  CHECK(dl == ph, "dl_iterate_phdr disagrees with AT_PHDR");
  say("AT_PHDR/AT_PHNUM/AT_PHENT/AT_ENTRY match the program: yes\n");
  /* Every PT_LOAD segment is mapped where the headers say: read its first and last byte. */
  for (int i = 0; i < eh->e_phnum; i++)
    if (ph[i].p_type == PT_LOAD && ph[i].p_memsz > 0) {
      volatile const char *first = (const char *)(bias + ph[i].p_vaddr);
      volatile const char *last = first + ph[i].p_memsz - 1;
      (void)*first;
      (void)*last;
    }
  say("PT_LOAD segments readable: yes\n");
  CHECK(getauxval(AT_PAGESZ) == 4096 && sysconf(_SC_PAGESIZE) == 4096, "page size");
  return 0;
}
