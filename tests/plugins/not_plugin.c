/* A shared object that is not a plugin: it exports no entry point. */
int test_not_a_plugin(void);
__attribute__((visibility("default"))) int test_not_a_plugin(void) { return 42; }
