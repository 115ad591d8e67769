from repro.driver.cli import main

raise SystemExit(main())
