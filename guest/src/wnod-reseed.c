/* wnod-reseed: mix host entropy into the guest's input pool, force a CRNG reseed and set the clock.
 * Clones restored from one snapshot share the kernel's RNG state: writing to /dev/urandom only mixes into the input
 * pool (Linux 6.1 does not reseed the CRNG at once), so RNDADDENTROPY + RNDRESEEDCRNG are needed.
 * Usage: wnod-reseed SECONDS NANOSECONDS  < hex-seed   (exit 0 = all done; 2 usage; 3 seed; 4 ioctl; 5 clock)
 * x86_64 Linux, no libc (gcc -static -nostdlib -Os): a static glibc binary costs ~40 ms per exec under TCG, and
 * this runs on every restore before anything of the job. */
#include <linux/random.h>
#include <linux/time.h>
#include <asm/unistd.h>
#include <asm/ioctl.h>

#define MAX_SEED 512

static long sys3(long n, long a, long b, long c) {
  long r;
  __asm__ volatile ("syscall" : "=a"(r) : "a"(n), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
  return r;
}

static long slen(const char *s) { long n = 0; while (s[n]) n++; return n; }
static void say(const char *s) { sys3(__NR_write, 2, (long)s, slen(s)); }
static void die(const char *s, int code) { say("wnod-reseed: "); say(s); say("\n"); sys3(__NR_exit, code, 0, 0); for (;;) {} }

static int hexval(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* a decimal number, at most 19 digits; -1 if not one */
static long long number(const char *s) {
  long long v = 0;
  int n = 0;
  if (!*s) return -1;
  for (; *s; s++, n++) {
    if (*s < '0' || *s > '9' || n >= 19) return -1;
    v = v * 10 + (*s - '0');
  }
  return v;
}

static struct { int entropy_count; int buf_size; unsigned char buf[MAX_SEED]; } e;
static char hex[2 * MAX_SEED + 2];

static int run(int argc, char **argv) {
  long long sec, nsec;
  long n = 0, r;
  int fd, i;
  if (argc != 3 || (sec = number(argv[1])) < 0 || (nsec = number(argv[2])) < 0 || nsec > 999999999) die("usage: wnod-reseed SECONDS NANOSECONDS < hex-seed", 2);
  while (n < (long)sizeof hex && (r = sys3(__NR_read, 0, (long)(hex + n), sizeof hex - n)) > 0) n += r;
  while (n > 0 && (hex[n - 1] == '\n' || hex[n - 1] == ' ')) n--;
  if (n < 64 || n % 2 || n > 2 * MAX_SEED) die("want 32..512 bytes of seed as hex", 3);
  for (i = 0; i < n / 2; i++) {
    int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) die("seed is not hex", 3);
    e.buf[i] = (unsigned char)(hi << 4 | lo);
  }
  e.buf_size = (int)(n / 2);
  e.entropy_count = e.buf_size * 8;
  fd = (int)sys3(__NR_open, (long)"/dev/urandom", 02 /* O_RDWR */ | 02000000 /* O_CLOEXEC */, 0);
  if (fd < 0) die("cannot open /dev/urandom", 4);
  if (sys3(__NR_ioctl, fd, RNDADDENTROPY, (long)&e) < 0) die("RNDADDENTROPY failed", 4);
  if (sys3(__NR_ioctl, fd, RNDRESEEDCRNG, 0) < 0) die("RNDRESEEDCRNG failed", 4);
  sys3(__NR_close, fd, 0, 0);
  for (i = 0; i < MAX_SEED; i++) ((volatile unsigned char *)e.buf)[i] = 0;
  struct timespec ts = { .tv_sec = sec, .tv_nsec = nsec };
  if (sys3(__NR_clock_settime, CLOCK_REALTIME, (long)&ts, 0) < 0) die("clock_settime failed", 5);
  return 0;
}

/* the entry point: argc at (%rsp), argv after it */
void __attribute__((used)) start_c(long *sp) {
  sys3(__NR_exit, run((int)sp[0], (char **)(sp + 1)), 0, 0);
}
__asm__(".globl _start\n_start:\n  xor %rbp, %rbp\n  mov %rsp, %rdi\n  and $-16, %rsp\n  call start_c\n  hlt\n");
