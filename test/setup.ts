// Root hooks for every test file.
process.env.DROVER_TEST = '1';
