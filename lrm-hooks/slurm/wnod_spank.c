/* wnod SPANK plugin: runs the batch script of a wnod job inside the job's VM.
 *
 * Built at install time by `wnod install slurm --apply` against Debian's <slurm/spank.h> (libslurm-dev) and loaded by
 * slurmstepd through plugstack.conf:
 *
 *   required /usr/local/lib/wnod/slurm/wnod_spank.so runner=/usr/local/lib/wnod/slurm/runner marks=/var/lib/wnod/slurm
 *
 * In the batch step's task (slurm_spank_task_init: the forked task, already the job user, just before execve), and
 * only when the root Prolog marked the job as wnod's, the task's argv[0] (the batch script in slurmd's spool) becomes
 * the runner; the script's path goes along as WNOD_JOB_SCRIPT and the job id as WNOD_SLURM_JOB_ID. slurmstepd then
 * execs the runner with the job's own fds, rlimits and environment.
 *
 * The mark is <marks>/<jobid>.mode written by the Prolog: a root-owned regular file, not group/other writable, in a
 * root-owned directory that is not group/other writable; the job id comes from slurmstepd (S_JOB_ID), never from the
 * job's environment. Its first line is `vm` (run in the VM) or `refuse` (the runner prints the refusal): both swap the
 * argv. Anything else (`bare`, no mark: jobs of other partitions) leaves the job untouched.
 *
 * Other steps of a marked job (srun inside the allocation, `srun --jobid` from a login node) are refused: the job's
 * work belongs in its VM, and a step would run natively on the host. The extern step (PrologFlags=Contain) is left
 * alone. Only this file is C in wnod.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <slurm/slurm.h>
#include <slurm/spank.h>

SPANK_PLUGIN(wnod, 1);

static char runner[PATH_MAX];
static char marks[PATH_MAX];

enum mark { MARK_NONE = 0, MARK_VM, MARK_REFUSE };

/* A plugstack.conf argument `key=/absolute/path`: copied into dst; 0 when it matched. */
static int take_path(const char *arg, const char *key, char *dst)
{
	size_t n = strlen(key);
	if (strncmp(arg, key, n) != 0 || arg[n] != '=')
		return -1;
	const char *v = arg + n + 1;
	if (v[0] != '/' || strlen(v) >= PATH_MAX || strstr(v, "/../") != NULL)
		return -2;
	strcpy(dst, v);
	return 0;
}

static int parse_args(int ac, char **av)
{
	runner[0] = marks[0] = '\0';
	for (int i = 0; i < ac; i++) {
		int r = take_path(av[i], "runner", runner);
		if (r == -1)
			r = take_path(av[i], "marks", marks);
		if (r != 0) {
			slurm_error("wnod: plugstack.conf argument '%s' is not runner=/abs/path or marks=/abs/path", av[i]);
			return -1;
		}
	}
	if (!runner[0] || !marks[0]) {
		slurm_error("wnod: plugstack.conf needs runner= and marks=");
		return -1;
	}
	return 0;
}

/* Root-owned and not writable by group or others. */
static int trusted(const struct stat *st)
{
	return st->st_uid == 0 && (st->st_mode & (S_IWGRP | S_IWOTH)) == 0;
}

/* What the Prolog decided for this job (MARK_NONE: not a wnod job, or no trustworthy mark). */
static enum mark read_mark(uint32_t job_id)
{
	struct stat st;
	char path[PATH_MAX];
	char buf[16];

	if (lstat(marks, &st) != 0 || !S_ISDIR(st.st_mode) || !trusted(&st))
		return MARK_NONE;
	if (snprintf(path, sizeof(path), "%s/%u.mode", marks, job_id) >= (int)sizeof(path))
		return MARK_NONE;
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return MARK_NONE;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || !trusted(&st)) {
		close(fd);
		return MARK_NONE;
	}
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return MARK_NONE;
	buf[n] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
	if (strcmp(buf, "vm") == 0)
		return MARK_VM;
	if (strcmp(buf, "refuse") == 0)
		return MARK_REFUSE;
	return MARK_NONE;
}

int slurm_spank_init(spank_t sp, int ac, char **av)
{
	(void)sp;
	if (spank_context() != S_CTX_REMOTE)
		return 0;
	return parse_args(ac, av);
}

int slurm_spank_task_init(spank_t sp, int ac, char **av)
{
	uint32_t job_id = 0, step_id = 0;
	int argc = 0;
	char **argv = NULL;
	char idbuf[16];

	(void)ac;
	(void)av;
	if (spank_context() != S_CTX_REMOTE)
		return 0;
	if (spank_get_item(sp, S_JOB_ID, &job_id) != ESPANK_SUCCESS
	    || spank_get_item(sp, S_JOB_STEPID, &step_id) != ESPANK_SUCCESS) {
		slurm_error("wnod: cannot read the job and step ids");
		return -1;
	}
	if (step_id == SLURM_EXTERN_CONT)
		return 0;
	enum mark m = read_mark(job_id);
	if (m == MARK_NONE)
		return 0;
	if (step_id != SLURM_BATCH_SCRIPT) {
		slurm_error("wnod: job %u runs in its virtual machine: job steps (srun) are not supported, "
			    "run the commands in the batch script itself", job_id);
		return -1;
	}
	if (spank_get_item(sp, S_JOB_ARGV, &argc, &argv) != ESPANK_SUCCESS || argc < 1 || argv == NULL || argv[0] == NULL) {
		slurm_error("wnod: job %u: cannot read the batch step's argv", job_id);
		return -1;
	}
	snprintf(idbuf, sizeof(idbuf), "%u", job_id);
	if (spank_setenv(sp, "WNOD_JOB_SCRIPT", argv[0], 1) != ESPANK_SUCCESS
	    || spank_setenv(sp, "WNOD_SLURM_JOB_ID", idbuf, 1) != ESPANK_SUCCESS) {
		slurm_error("wnod: job %u: cannot set the runner's environment", job_id);
		return -1;
	}
	char *r = strdup(runner);
	if (r == NULL)
		return -1;
	/* slurmstepd execs argv[0] of this very array (task.c: after spank_user_task) */
	argv[0] = r;
	return 0;
}
