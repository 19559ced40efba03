from poselib.cli import main

raise SystemExit(main())
