mod workspace_race;
