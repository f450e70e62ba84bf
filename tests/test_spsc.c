/* placeholder, replaced in the next steps */
int main(void) { return 77; }
