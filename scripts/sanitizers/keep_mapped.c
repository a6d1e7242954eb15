/* dlclose that leaves the library mapped: LD_PRELOADed by scripts/sanitize.sh (address).
 *
 * Open MPI closes its MCA plugins (mca_*.so) in MPI_Finalize and pocl closes each program's
 * kernel library when the program is released. LeakSanitizer looks for leaks at exit, after
 * that, so (1) the globals of an unloaded plugin no longer count as roots: what only they
 * pointed to is reported as leaked, and (2) a stack frame in an unloaded library is printed
 * as "<unknown module>", so no suppression and no reader (lsan_ours.py) can attribute it.
 * With every library kept until exit, the plugins' memory is reachable again or named by
 * its library (libmpi, libopen-pal, mca_*: suppressed in lsan.supp as the driver's).
 * Nothing is freed by this: the library's destructors still run at process exit.
 * Our code does not call dlclose (Distributed keeps libmpi open for the process).
 */
int dlclose(void *handle) {
    (void)handle;
    return 0;
}
