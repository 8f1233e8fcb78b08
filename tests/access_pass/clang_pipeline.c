/* Compiled by clang-14 -fpass-plugin at -O0 and at -O2 (tests access_pass.clang_O0/_O2): the
 * plugin must run in both default pipelines. */
struct node {
  long key;
  long value;
  struct node* next;
};

long lookup(struct node* n, long key) {
  for (; n; n = n->next) {
    if (n->key == key) return n->value;
  }
  return -1;
}

static long counter;

int local_and_global(int x) {
  int buf[8];
  for (int i = 0; i < 8; ++i) buf[i] = x + i;
  counter += buf[x & 7];
  return buf[(x + 1) & 7];
}

/* CHECK-LABEL: define {{.*}}@lookup(
 * CHECK:       load i8, i8* @__constmig_at_active
 * CHECK:       call void @__constmig_at_fetch(
 * CHECK:       ret i64
 * CHECK-LABEL: define {{.*}}@local_and_global(
 * CHECK-NOT:   @__constmig_at_fetch
 * CHECK:       ret i32
 */
